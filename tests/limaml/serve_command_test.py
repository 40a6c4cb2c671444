"""Tests of `limaml serve`: predict, status and metadata against the real dev server, and start.

The session's server (tests/serving_fixtures.py) serves the tiny personalised
model as `limaml`; members 7 and 8 are in its table and in the data CSV.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from limaml import cli
from serving import client as client_lib


def _serve(*args):
  return cli.main(["serve", *args])


def _grpc(server):
  return ["--server", f"127.0.0.1:{server.grpc_port}"]


def _rest(server):
  return ["--rest", f"http://127.0.0.1:{server.rest_port}"]


def test_predict_prints_the_top_k_table(server, interactions_csv, capsys):
  assert _serve("predict", "--member", "7", "--items", "x,y", "--k", "1",
                "--data", interactions_csv, *_grpc(server)) == 0
  out = capsys.readouterr().out.splitlines()
  assert out[0] == "member 7 (personalised: adapted meta embedding)"
  assert len(out) == 3 and out[2].split()[1] in ("x", "y")


def test_member_with_surrounding_spaces_is_stripped_with_a_note(server, interactions_csv,
                                                                 capsys):
  assert _serve("predict", "--member", " 7  ", "--items", "x,y", "--data", interactions_csv,
                *_grpc(server)) == 0
  captured = capsys.readouterr()
  assert captured.out.splitlines()[0] == "member 7 (personalised: adapted meta embedding)"
  assert "note: stripped surrounding spaces from --member ' 7  '" in captured.err


def test_predict_json_over_rest_for_a_cold_start_member(server, interactions_csv, capsys):
  assert _serve("predict", "--member", "123", "--data", interactions_csv, "--json",
                *_rest(server)) == 0
  answer = json.loads(capsys.readouterr().out)
  assert answer["member_id"] == "123" and answer["personalised"] is False
  assert {i["item_id"] for i in answer["items"]} == {"x", "y"}  # All items, default k.


def test_status_and_metadata(server, capsys):
  assert _serve("status", *_grpc(server)) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[1].split() == ["1", "AVAILABLE"]
  assert _serve("metadata", *_rest(server)) == 0
  metadata = json.loads(capsys.readouterr().out)
  assert "serving_default" in metadata["signature_def"]


def test_unknown_items_and_servers_are_one_line_errors(server, interactions_csv, capsys):
  assert _serve("predict", "--member", "7", "--items", "x,zzz", "--data", interactions_csv,
                *_grpc(server)) == 1
  err = capsys.readouterr().err
  assert "unknown items ['zzz']" in err and "Traceback" not in err
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  assert _serve("status", "--server", f"127.0.0.1:{port}", "--timeout", "2") == 1
  err = capsys.readouterr().err
  assert err.startswith("limaml serve status: error: UNAVAILABLE") and "Traceback" not in err
  assert _serve("predict", "--member", "7", "--data", interactions_csv, "--model-name", "nope",
                *_rest(server)) == 1
  assert "NOT_FOUND" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["predict", "--member", "7", "--k", "0"], "--k must be a positive integer"),
    (["predict", "--member", "7", "--items", ","], "--items names no item"),
    (["predict", "--member", "7\n8"], "--member must not contain control characters"),
    (["predict", "--member", "  "], "--member must not be empty"),
    (["status", "--timeout", "-1"], "--timeout must be positive"),
    (["status", "--server", "nohost"], "host:port"),
    (["status", "--server", "a:1", "--rest", "http://a:2"], "not allowed with"),
    (["start", "--model-base-path", ".", "--grpc-port", "70000"], "--grpc-port must be"),
    (["start", "--model-base-path", ".", "--max-request-bytes", "0"],
     "--max-request-bytes must be a positive integer"),
    (["start", "--model-base-path", ".", "--rest-api-timeout", "0"],
     "--rest-api-timeout must be positive"),
    (["start", "--model-base-path", ".", "--settle-interval", "-1"],
     "--settle-interval must be >= 0"),
])
def test_bad_flags_are_usage_errors(args, message, capsys):
  with pytest.raises(SystemExit) as exit_info:
    _serve(*args)
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err


def test_missing_paths_are_named(tmp_path, capsys):
  assert _serve("start", "--model-base-path", str(tmp_path / "none")) == 1
  assert "no such model base path" in capsys.readouterr().err
  assert _serve("predict", "--member", "7", "--data", str(tmp_path / "none.csv")) == 1
  assert "no such interactions CSV" in capsys.readouterr().err


# Sets SIGINT to ignored, then execs the command in its arguments: an ignored
# disposition survives exec. Used instead of `preexec_fn`, which runs Python in a
# fork of this multi-threaded test process (gRPC threads from earlier tests) — the
# subprocess docs warn that the child can deadlock or die before exec there.
_EXEC_WITH_SIGINT_IGNORED = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                             "os.execv(sys.argv[1], sys.argv[1:])")


def _stderr_tail(stderr_path):
  with open(stderr_path) as f:
    return f.read()[-8000:]


def _stop_or_dump_stacks(process, stderr_path, timeout):
  """SIGINT, then the exit code; a process still running after `timeout` s is
  aborted (`PYTHONFAULTHANDLER` writes every thread's stack to its stderr file)
  and the test fails with that file's end."""
  process.send_signal(signal.SIGINT)
  try:
    return process.wait(timeout=timeout)
  except subprocess.TimeoutExpired:
    process.send_signal(signal.SIGABRT)
    process.wait(timeout=30)
    pytest.fail(f"still running {timeout} s after SIGINT; stacks:\n{_stderr_tail(stderr_path)}")


@pytest.mark.slow  # a subprocess server: measured 35-130 s on 2 busy cores
def test_start_serves_until_interrupted(saved_models, tmp_path):
  base_path = tmp_path / "limaml"
  shutil.copytree(saved_models.personalised_v1, base_path / "3")
  stderr_path = tmp_path / "stderr.txt"
  stderr = open(stderr_path, "w")  # pylint: disable=consider-using-with
  # Started with SIGINT ignored, as pytest-xdist workers and background jobs of
  # non-interactive shells start children: Ctrl-C must stop the server all the same.
  process = subprocess.Popen(
      [sys.executable, "-c", _EXEC_WITH_SIGINT_IGNORED, sys.executable, "-m", "limaml.cli",
       "serve", "start", "--model-base-path", str(base_path), "--grpc-port", "0",
       "--rest-port", "0"],
      stdout=subprocess.PIPE, stderr=stderr, text=True,
      env={**os.environ, "PYTHONFAULTHANDLER": "1"},
      cwd=os.path.dirname(os.path.dirname(cli.__file__)))
  try:
    line = process.stdout.readline()
    if not line.startswith("serving 'limaml'"):
      process.wait(timeout=30)
      pytest.fail(f"the server printed {line!r} and exited with {process.returncode}; "
                  f"its stderr:\n{_stderr_tail(stderr_path)}")
    target = line.split("gRPC ")[1].split(",")[0]
    with client_lib.GrpcClient(target, timeout_s=10) as client:
      assert client.model_status()[0]["version"] == 3
    assert _stop_or_dump_stacks(process, stderr_path, timeout=30) == 0
  finally:
    if process.poll() is None:
      process.kill()
    stderr.close()
