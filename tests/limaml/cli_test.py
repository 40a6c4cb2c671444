"""The `limaml` command line: sub-commands are registered, bad values exit 2 with a message."""

import pytest

from limaml import cli


def test_help_lists_the_commands(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--help"])
  assert exit_info.value.code == 0
  out = capsys.readouterr().out
  for command in ("demo", "evaluate"):
    assert command in out


def test_a_command_is_required(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.main([])
  assert exit_info.value.code == 2
  assert "required" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "--epochs", "0"], "expected a positive integer"),
    (["evaluate", "--epochs", "many"], "expected a positive integer"),
    (["evaluate", "--dataset", "netflix"], "invalid choice"),
    (["evaluate", "--seeds", "x"], "invalid int value"),
])
def test_bad_values_exit_2_naming_the_problem(capsys, argv, message):
  with pytest.raises(SystemExit) as exit_info:
    cli.main(argv)
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err
