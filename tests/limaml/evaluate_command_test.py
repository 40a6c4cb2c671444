"""`limaml evaluate`: --data takes the pipeline's CSV contract; bad input is a one-line error."""

import json
import os
import subprocess
import sys
import time

import pytest

from limaml import cli
from limaml import evaluate_command
from limaml_keras import schema, synthetic


@pytest.fixture
def small_csv(tmp_path):
  data = synthetic.generate(num_members=40, num_items=15, seed=0)
  path = synthetic.write_csv(data, str(tmp_path / "data" / "interactions.csv"))
  schema.save_spec(data.spec, str(tmp_path / "data" / schema.SPEC_FILE_NAME))
  return path


def _error(argv, capsys):
  code = cli.main(argv)
  err = capsys.readouterr().err
  return code, err


def test_bad_csv_value_is_one_line(small_csv, tmp_path, capsys):
  lines = open(small_csv, encoding="utf-8").read().splitlines()
  lines[1] = lines[1].replace(lines[1].split(",")[0], "", 1)  # empty member_id
  open(small_csv, "w", encoding="utf-8").write("\n".join(lines) + "\n")
  code, err = _error(["evaluate", "--data", small_csv, "--output", str(tmp_path / "o")], capsys)
  assert code == 1
  assert err.startswith("limaml evaluate: error: ") and "line 2" in err and "member_id" in err
  assert "Traceback" not in err and err.count("\n") == 1


def test_missing_data_and_missing_spec_are_one_line(tmp_path, capsys):
  code, err = _error(["evaluate", "--data", str(tmp_path / "nope.csv")], capsys)
  assert code == 1 and "no such file or directory" in err and err.count("\n") == 1
  lonely = tmp_path / "lonely"
  lonely.mkdir()
  (lonely / "x.csv").write_text("member_id\n")
  code, err = _error(["evaluate", "--data", str(lonely / "x.csv")], capsys)
  assert code == 1 and "no feature spec" in err and "--spec" in err


def test_spec_without_data_is_refused(capsys):
  code, err = _error(["evaluate", "--spec", "features.json"], capsys)
  assert code == 1 and "--spec applies to --data only" in err


def test_dataset_and_data_are_exclusive(small_csv):
  with pytest.raises(SystemExit):
    cli.main(["evaluate", "--dataset", "synthetic", "--data", small_csv])


def test_unknown_protocol_is_refused_by_argparse():
  with pytest.raises(SystemExit):
    cli.main(["evaluate", "--protocol", "random"])


@pytest.mark.parametrize("bad", ["0", "-3", "many"])
def test_a_bad_support_cap_is_refused_by_argparse(bad, capsys):
  with pytest.raises(SystemExit):
    cli.main(["evaluate", "--max-support", bad])
  assert "--max-support" in capsys.readouterr().err


def test_the_support_cap_defaults_to_the_pipelines():
  from limaml_keras import task_settings  # pylint: disable=import-outside-toplevel
  args = cli.build_parser().parse_args(["evaluate"])
  assert args.max_support == task_settings.DEFAULTS.max_support


def test_input_files_of_a_split_root_reads_both_periods(tmp_path):
  for period in ("train", "eval"):
    (tmp_path / period).mkdir()
    (tmp_path / period / "part.csv").write_text("x\n")
  files = evaluate_command.input_files(str(tmp_path))
  assert [os.path.basename(os.path.dirname(f)) for f in files] == ["train", "eval"]


def test_help_imports_no_tensorflow():
  code = ("import sys, contextlib, io\nfrom limaml import cli\n"
          "with contextlib.redirect_stdout(io.StringIO()):\n"
          "  try: cli.main(['evaluate', '--help'])\n  except SystemExit: pass\n"
          "print('tensorflow' in sys.modules)")
  started = time.perf_counter()
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False", out.stderr
  assert time.perf_counter() - started < 10


@pytest.mark.slow
def test_evaluate_user_csv_member_protocol_end_to_end(small_csv, tmp_path, capsys):
  output = tmp_path / "out"
  code = cli.main(["evaluate", "--data", os.path.dirname(small_csv), "--protocol", "member",
                   "--seeds", "0", "--epochs", "1", "--methods", "global", "limaml",
                   "--output", str(output), "--as-of", "2000000000", "--max-support", "30"])
  out = capsys.readouterr().out
  assert code == 0
  assert "no tuned settings for 'data'" in out and "uses the settings tuned on" in out
  record = json.load(open(output / "results.json", encoding="utf-8"))
  assert record["hyperparameters"]["limaml"]["task_history"] > 0  # The recipe.
  assert record["protocol"]["name"] == "member" and record["protocol"]["cutoff"] is None
  assert record["protocol"]["max_support"] == 30
  assert set(record["results"]) == {"global", "limaml"}
  assert set(record["results"]["limaml"]["few_shot"]) == {"0", "1", "2", "5", "10", "20", "50"}
  runs = {os.path.relpath(root, output / "tensorboard") for root, _, files in
          os.walk(output / "tensorboard") if any(f.startswith("events.out") for f in files)}
  assert {"global/seed_0/train", "limaml/seed_0/train", "limaml/seed_0/maml",
          "limaml/seed_0/evaluation"} <= runs
