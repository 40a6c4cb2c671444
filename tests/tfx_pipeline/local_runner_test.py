"""`local_runner`: the output layout, progress lines and log state, the local pipeline's settings.

A whole run (LocalDagRunner, SQLite metadata, `latest_outputs` on it) is in
`tests/tfx_pipeline/pipeline/pipeline_test.py`.
"""

import logging
import os
import types

from absl import logging as absl_logging

from tfx_pipeline import local_runner
from tfx_pipeline import testing
from tfx_pipeline.pipeline import configs
from tfx_pipeline.pipeline import quiet_workers


def test_every_path_derives_from_the_output_directory(tmp_path):
  paths = local_runner.LocalPaths(str(tmp_path))
  assert paths.data_root == str(tmp_path / "data")
  assert paths.pipeline_root == str(tmp_path / "pipeline")
  assert paths.metadata_path == str(tmp_path / "metadata.sqlite")
  assert paths.serving_model_dir == str(tmp_path / "serving_model")
  config = paths.metadata_connection_config()
  assert config.sqlite.filename_uri == paths.metadata_path


def test_no_metadata_means_no_outputs(tmp_path):
  paths = local_runner.LocalPaths(str(tmp_path))
  assert local_runner.latest_outputs(paths, configs.PIPELINE_NAME, "Trainer") == {}
  assert not os.path.exists(paths.metadata_path)  # asking does not create a store


def _record(msg, *args, level=logging.INFO):
  return logging.LogRecord("absl", level, __file__, 1, msg, args, None)


def test_progress_is_one_line_per_component_event(monkeypatch):
  lines = []
  ticks = iter([100.0, 102.5, 200.0, 200.25])
  monkeypatch.setattr(local_runner, "time", types.SimpleNamespace(time=lambda: next(ticks)))
  handler = local_runner._ProgressHandler(["CsvExampleGen", "Trainer"], lines.append,
                                          forward_level=logging.ERROR)
  handler.emit(_record("Component %s is running.", "Trainer"))
  handler.emit(_record("Component %s is finished.", "Trainer"))
  handler.emit(_record("Component %s is running.", "CsvExampleGen"))
  handler.emit(_record("A cached execution %d is used.", 7))
  handler.emit(_record("Component %s is finished.", "CsvExampleGen"))
  assert lines == ["[2/2] Trainer: running", "[2/2] Trainer: done (2.5 s)",
                   "[1/2] CsvExampleGen: running", "[1/2] CsvExampleGen: cached (0.2 s)"]


def test_quiet_progress_forwards_only_errors_and_restores_the_log_state(monkeypatch):
  forwarded = []
  monkeypatch.setattr(logging.getLogger(), "handle", forwarded.append)
  for name in (quiet_workers.TF_CPP_LOG_LEVEL_ENV, quiet_workers.QUIET_ENV):
    monkeypatch.delenv(name, raising=False)
  logger = absl_logging.get_absl_logger()
  before = (absl_logging.get_verbosity(), logger.propagate, logging.getLogger().level,
            list(logger.handlers))
  lines = []
  with local_runner._progress(["Trainer"], lines.append, quiet=True):
    handler = logger.handlers[-1]
    handler.emit(_record("some INFO chatter"))
    handler.emit(_record("a failure", level=logging.ERROR))
    assert os.environ[quiet_workers.QUIET_ENV]  # Beam workers inherit the quiet setting
  assert [r.msg for r in forwarded] == ["a failure"]
  assert (absl_logging.get_verbosity(), logger.propagate, logging.getLogger().level,
          list(logger.handlers)) == before
  assert quiet_workers.QUIET_ENV not in os.environ


def test_the_local_pipeline_uses_the_paths_and_quiet_beam_workers(tmp_path):
  paths = local_runner.LocalPaths(str(tmp_path))
  pipeline = local_runner.create_local_pipeline(
      paths, str(tmp_path / "data"), testing.SPEC,
      beam_pipeline_args=configs.IN_MEMORY_BEAM_PIPELINE_ARGS)
  assert pipeline.pipeline_info.pipeline_name == configs.PIPELINE_NAME
  assert pipeline.pipeline_info.pipeline_root == paths.pipeline_root
  assert pipeline.beam_pipeline_args == [*configs.IN_MEMORY_BEAM_PIPELINE_ARGS,
                                         quiet_workers.BEAM_PLUGIN_ARG]
  assert pipeline.metadata_connection_config.sqlite.filename_uri == paths.metadata_path
  pusher = next(c for c in pipeline.components if c.id == configs.PUSHER_ID)
  assert paths.serving_model_dir in str(pusher.exec_properties["push_destination"])
