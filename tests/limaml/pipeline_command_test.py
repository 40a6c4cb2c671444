"""Tests of `limaml pipeline`: argument handling and up-front data validation."""

import csv
import os
import subprocess
import sys

from ml_metadata.proto import metadata_store_pb2
import pytest

from limaml import cli
from limaml_keras import synthetic
from limaml import pipeline_command as pipeline_cli
from tfx_pipeline.pipeline import configs
from limaml_keras import model_config
from limaml_keras import schema
from limaml_keras import task_settings


def _write_csv(path, header, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return str(path)


@pytest.fixture
def small_csv(tmp_path):
  data = synthetic.generate(num_members=20, num_items=10, seed=0)
  path = synthetic.write_csv(data, str(tmp_path / "interactions.csv"))
  schema.save_spec(data.spec, str(tmp_path / schema.SPEC_FILE_NAME))
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  return path, rows[0], rows[1:]


def _run(argv, capsys):
  code = cli.main(argv)
  return code, capsys.readouterr().err


def test_missing_column_fails_before_tfx(small_csv, tmp_path, capsys):
  path, header, rows = small_csv
  drop = header.index("label")
  _write_csv(path, header[:drop] + header[drop + 1:], [r[:drop] + r[drop + 1:] for r in rows])
  code, err = _run(["pipeline", "run", "--data", path, "--output", str(tmp_path / "out")],
                   capsys)
  assert code == 1
  assert "limaml pipeline: error:" in err and "missing columns ['label']" in err
  assert not (tmp_path / "out" / "pipeline").exists()


def test_non_numeric_label_is_named(small_csv, tmp_path, capsys):
  path, header, rows = small_csv
  rows[4][header.index("label")] = "yes"
  _write_csv(path, header, rows)
  code, err = _run(["pipeline", "run", "--data", path, "--output", str(tmp_path / "out")],
                   capsys)
  assert code == 1
  assert f"{path} line 6: column 'label' must be 0 or 1, got 'yes'" in err


def test_data_without_spec_says_what_to_do(tmp_path, capsys):
  path = _write_csv(tmp_path / "x.csv", ["member_id"], [["m"]])
  code, err = _run(["pipeline", "run", "--data", path, "--output", str(tmp_path / "out")],
                   capsys)
  assert code == 1 and "pass --spec FILE" in err


def test_subcommands_are_registered():
  parser = cli.build_parser()
  run = parser.parse_args(["pipeline", "run", "--epochs", "3", "--beam-arg=--x=1",
                           "--min-gauc-gain", "0.02", "--max-log-loss-increase", "0.05"])
  assert run.func.__name__ == "_run" and run.epochs == 3 and run.beam_arg == ["--x=1"]
  assert (run.min_auc, run.min_gauc_gain, run.max_log_loss_increase) == (
      configs.MIN_AUC, 0.02, 0.05)
  compile_ = parser.parse_args(["pipeline", "compile", "--output", "spec.json"])
  assert compile_.func.__name__ == "_compile" and compile_.output == "spec.json"
  with pytest.raises(SystemExit):
    parser.parse_args(["pipeline"])


@pytest.mark.parametrize("flag, value, message", [
    ("--min-auc", "2", "min_auc must be in [0, 1], got 2.0"),
    ("--min-gauc-gain", "1", "min_gauc_gain must be in [-1, 1), got 1.0"),
    ("--max-log-loss-increase", "-0.1", "max_log_loss_increase must be finite and >= 0, got -0.1"),
])
def test_bad_threshold_fails_before_tfx(small_csv, tmp_path, capsys, flag, value, message):
  path, _, _ = small_csv
  code, err = _run(["pipeline", "run", "--data", path, "--output", str(tmp_path / "out"),
                    flag, value], capsys)
  assert code == 1 and message in err
  assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--max-support", "0"], "max_support must be a whole number >= 1, got 0"),
    (["--window", "1"], "window must be a whole number >= 2, got 1"),
    (["--task-history", "-1"], "task_history must be a whole number >= 0, got -1"),
])
def test_bad_task_setting_fails_before_tfx(small_csv, tmp_path, capsys, flags, message):
  path, _, _ = small_csv
  code, err = _run(["pipeline", "run", "--data", path, "--output", str(tmp_path / "out")]
                   + flags, capsys)
  assert code == 1 and message in err
  assert not (tmp_path / "out").exists()


def _settings(argv):
  kwargs = pipeline_cli._pipeline_kwargs(cli.build_parser().parse_args(["pipeline", "run"] + argv))
  return kwargs["model_config"], kwargs["task_settings"]


def test_flag_defaults_are_the_library_defaults():
  assert _settings([]) == (model_config.ModelConfig(), task_settings.DEFAULTS)
  assert _settings(["--settings-from", "defaults", "--data", "x.csv"]) == (
      model_config.ModelConfig(), task_settings.DEFAULTS)
  run = cli.build_parser().parse_args(["pipeline", "run"])
  assert run.eval_fraction == task_settings.EVAL_FRACTION


def test_a_users_data_starts_from_the_settings_tuned_on_real_data():
  from limaml_keras.evaluation import tuned  # pylint: disable=g-import-not-at-top
  hp = tuned.hyperparameters(tuned.FOR_NEW_DATA)["limaml"]
  assert _settings(["--data", "x.csv"]) == (hp.model_config(), hp.training_task_settings())
  compile_args = cli.build_parser().parse_args(["pipeline", "compile", "--spec", "f.json",
                                                "--output", "spec.json"])
  config, _ = pipeline_cli._starting_settings(pipeline_cli._settings_source(compile_args))
  assert config == hp.model_config()


def test_settings_from_a_tuned_dataset_then_the_flags():
  from limaml_keras.evaluation import tuned  # pylint: disable=g-import-not-at-top
  hp = tuned.hyperparameters("movielens-100k")["limaml"]
  config, tasks = _settings(["--settings-from", "movielens-100k", "--epochs", "2"])
  assert (config.support_items, config.meta_item_interaction, config.train_support_sizes,
          config.member_id_embedding, config.meta_offset) == (
              hp.support_items, hp.meta_item_interaction, hp.train_support_sizes,
              hp.member_id_embedding, hp.meta_offset)
  assert config.member_id_embedding  # The served model has the member-ID embedding.
  assert config.epochs == 2 and config.model == model_config.LIMAML
  assert tasks == task_settings.DEFAULTS.replace(window=hp.window, task_history=hp.task_history)
  assert tasks.task_history > 0  # The tuned recipe trains on history tasks.
  _, tasks = _settings(["--settings-from", "movielens-100k", "--task-history", "0"])
  assert tasks.task_history == 0


def test_settings_line_names_what_differs_from_the_defaults():
  config, tasks = _settings([])
  assert pipeline_cli.settings_line(config, tasks) == (
      "LiMAML settings: the defaults; tasks: the defaults")
  config, tasks = _settings(["--settings-from", "movielens-100k", "--epochs", "2"])
  line = pipeline_cli.settings_line(config, tasks, "movielens-100k")
  assert line.startswith("LiMAML settings (from the settings tuned on movielens-100k): ")
  assert "epochs=2" in line and "member_id_embedding=True" in line
  assert "support_items='shared'" in line and "tasks: window=5, task_history=50" in line
  assert "inner_steps=" not in line  # Equal to the default: not listed.


def test_unknown_settings_from_is_named(small_csv, tmp_path, capsys):
  path, _, _ = small_csv
  code, err = _run(["pipeline", "run", "--data", path, "--output", str(tmp_path / "out"),
                    "--settings-from", "nope"], capsys)
  assert code == 1 and "no tuned settings for 'nope'" in err
  assert not (tmp_path / "out").exists()


def _pushed_model(**properties):
  artifact = metadata_store_pb2.Artifact()
  for name, value in properties.items():
    if isinstance(value, int):
      artifact.custom_properties[name].int_value = value
    else:
      artifact.custom_properties[name].string_value = value
  return {"pushed_model": artifact}


def test_local_beam_runs_in_memory_up_to_the_measured_size():
  assert configs.local_beam_pipeline_args(0) == configs.IN_MEMORY_BEAM_PIPELINE_ARGS
  assert configs.local_beam_pipeline_args(configs.IN_MEMORY_MAX_INTERACTIONS) == (
      configs.IN_MEMORY_BEAM_PIPELINE_ARGS)
  assert configs.local_beam_pipeline_args(configs.IN_MEMORY_MAX_INTERACTIONS + 1) == (
      configs.MULTI_PROCESSING_BEAM_PIPELINE_ARGS)
  assert "--direct_running_mode=multi_processing" in configs.MULTI_PROCESSING_BEAM_PIPELINE_ARGS


def test_pushed_line_says_what_the_pusher_did():
  assert pipeline_cli.pushed_line(_pushed_model(pushed=0)) == (
      "serving model: not pushed: not blessed")
  assert pipeline_cli.pushed_line(_pushed_model(
      pushed=1, pushed_version="1700000000", pushed_destination="/s/1700000000")) == (
          "serving model: pushed version 1700000000 to /s/1700000000")


def test_as_of_drops_later_interactions_before_tfx(small_csv, tmp_path, capsys):
  path, _, _ = small_csv
  code, err = _run(["pipeline", "run", "--data", path, "--as-of", "0", "--output",
                    str(tmp_path / "out")], capsys)
  assert code == 1
  assert "no interaction left after the checks" in err
  assert not (tmp_path / "out" / "pipeline").exists()


_NOISE = ("Traceback", "E external", "Exception ignored")


@pytest.mark.slow
def test_ids_only_data_runs_end_to_end_with_a_quiet_console(tmp_path):
  """`limaml pipeline run` as a user runs it, on data with no member (or item) features.

  A fresh process with the default Beam arguments (in memory for these 725
  interactions; worker processes: `quiet_workers_test`); stderr may hold no
  error-looking line (TensorFlow's C++ start-up notices, shutdown noise), and
  the feature spec's empty member side must train, evaluate and push (the Meta
  Block reads support interactions only). With no `--settings-from`: a user's
  data gets the settings tuned on real data (`tuned.FOR_NEW_DATA`): history
  tasks, support items and the member-ID embedding, which the export, the
  meta-embedding job and the personalised model must all carry.
  """
  data = synthetic.generate(num_members=40, num_items=20, seed=0)
  path = str(tmp_path / "input" / "interactions.csv")
  (tmp_path / "input").mkdir()
  data.interactions[list(schema.KEY_COLUMNS)].to_csv(path, index=False)
  schema.save_spec(schema.FeatureSpec(), str(tmp_path / "input" / schema.SPEC_FILE_NAME))
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "LIMAML_QUIET")}
  result = subprocess.run(
      [sys.executable, "-m", "limaml.cli", "pipeline", "run", "--data", path,
       "--output", str(tmp_path / "out"), "--epochs", "1",
       "--min-auc", "0",
       "--min-gauc-gain", "-1", "--max-log-loss-increase", "100"],
      env=env, capture_output=True, text=True, timeout=3600)
  assert result.returncode == 0, result.stderr[-5000:]
  assert "[pipeline] blessed: yes" in result.stdout and "gAUC" in result.stdout
  assert "[pipeline] serving model: pushed version" in result.stdout
  assert "[pipeline] Beam: --direct_running_mode=in_memory (chosen by data size" in result.stdout
  assert "(from the settings tuned on movielens-100k)" in result.stdout
  assert "member_id_embedding=True" in result.stdout  # The settings line names the recipe.
  assert "meta_offset=True" in result.stdout  # ... the offset included (trained, then pushed).
  noisy = [line for line in result.stderr.splitlines() if any(n in line for n in _NOISE)]
  assert not noisy, result.stderr[-5000:]
