"""Runs the LiMAML pipeline on this machine: LocalDagRunner, SQLite ML Metadata, Beam DirectRunner.

All paths derive from one output directory::

    <output>/data/{train,eval}/   the time-split input (`input_data`)
    <output>/pipeline/            pipeline root: every component's artifacts
    <output>/metadata.sqlite      ML Metadata (what makes reruns hit the cache)
    <output>/serving_model/<v>/   pushed SavedModels, a TF Serving model_base_path

Progress is reported one line per component as it starts and ends (or is
taken from the cache).
"""

import contextlib
import dataclasses
import logging
import os
import time
from typing import Callable, Dict, Iterator, Optional, Sequence

from absl import logging as absl_logging
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from limaml_keras import schema
from tfx_pipeline.pipeline import configs
from tfx_pipeline.pipeline import pipeline as pipeline_lib
from tfx_pipeline.pipeline import quiet_workers

_NODE_CONTEXT_TYPE = "node"
_QUIET_ENVIRONMENT = (quiet_workers.TF_CPP_LOG_LEVEL_ENV, quiet_workers.QUIET_ENV)
_DONE_STATES = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


@dataclasses.dataclass(frozen=True)
class LocalPaths:
  """Where a local run keeps its files (see the module docstring)."""
  output_dir: str

  @property
  def data_root(self) -> str:
    return os.path.join(self.output_dir, "data")

  @property
  def pipeline_root(self) -> str:
    return os.path.join(self.output_dir, "pipeline")

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.output_dir, "metadata.sqlite")

  @property
  def serving_model_dir(self) -> str:
    return os.path.join(self.output_dir, "serving_model")

  def metadata_connection_config(self) -> metadata_store_pb2.ConnectionConfig:
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(self.metadata_path)


class _ProgressHandler(logging.Handler):
  """Turns the TFX launcher's log records into one progress line per event.

  Other records of at least `forward_level` go on to the root logger's
  handlers; the rest stop here.
  """

  def __init__(self, node_ids: Sequence[str], report: Callable[[str], None],
               forward_level: int):
    super().__init__(logging.INFO)
    self._position = {node_id: i + 1 for i, node_id in enumerate(node_ids)}
    self._total = len(node_ids)
    self._report = report
    self._forward_level = forward_level
    self._current, self._started, self._cached = None, 0.0, False

  def emit(self, record: logging.LogRecord) -> None:
    if record.msg == "Component %s is running.":
      self._current, self._started, self._cached = record.args[0], time.time(), False
      self._report(f"{self._prefix()} running")
    elif record.msg == "A cached execution %d is used.":
      self._cached = True
    elif record.msg == "Component %s is finished.":
      outcome = "cached" if self._cached else "done"
      self._report(f"{self._prefix()} {outcome} ({time.time() - self._started:.1f} s)")
    elif record.levelno >= self._forward_level:
      logging.getLogger().handle(record)

  def _prefix(self) -> str:
    position = self._position.get(self._current, "?")
    return f"[{position}/{self._total}] {self._current}:"


@contextlib.contextmanager
def _progress(node_ids: Sequence[str], report: Callable[[str], None],
              quiet: bool) -> Iterator[None]:
  """Reports component progress while the block runs; `quiet` shows only errors besides."""
  logger, root = absl_logging.get_absl_logger(), logging.getLogger()
  forward_level = logging.ERROR if quiet else logging.INFO
  handler = _ProgressHandler(node_ids, report, forward_level)
  verbosity, propagate, root_level = absl_logging.get_verbosity(), logger.propagate, root.level
  logger.addHandler(handler)
  logger.propagate = False
  # Through absl (not logger.setLevel): TensorFlow saves and restores absl's
  # verbosity around some calls, which would undo a bare logger level.
  absl_logging.set_verbosity(absl_logging.INFO)
  root.setLevel(forward_level)
  saved = {name: os.environ.get(name) for name in _QUIET_ENVIRONMENT}
  if quiet:  # Beam worker processes inherit it (`quiet_workers`).
    quiet_workers.quiet_environment()
  try:
    yield
  finally:
    for name, value in saved.items():
      if value is None:
        os.environ.pop(name, None)
      else:
        os.environ[name] = value
    root.setLevel(root_level)
    absl_logging.set_verbosity(verbosity)
    logger.propagate = propagate
    logger.removeHandler(handler)


def run(pipeline: tfx.dsl.Pipeline, report: Optional[Callable[[str], None]] = print,
        quiet: bool = True) -> None:
  """Runs `pipeline` with the LocalDagRunner.

  Args:
    pipeline: the pipeline.
    report: receives one progress line per component start and end; None
      leaves logging as it is.
    quiet: with `report`, show no other log records than errors (otherwise
      every INFO record of TFX, Beam and TensorFlow), and keep Beam worker
      processes quiet (`quiet_workers`).
  """
  node_ids = [component.id for component in pipeline.components]
  with _progress(node_ids, report, quiet) if report else contextlib.nullcontext():
    tfx.orchestration.LocalDagRunner().run(pipeline)


def create_local_pipeline(paths: LocalPaths, data_root: str, feature_spec: schema.FeatureSpec,
                          *, pipeline_name: str = configs.PIPELINE_NAME,
                          beam_pipeline_args: Sequence[str] = (
                              configs.MULTI_PROCESSING_BEAM_PIPELINE_ARGS),
                          **kwargs) -> tfx.dsl.Pipeline:
  """`pipeline.create_pipeline` with the local paths, SQLite metadata and local Beam args.

  Args:
    paths: the run's output layout.
    data_root: directory with `train/` and `eval/` CSVs.
    feature_spec: the data's feature spec.
    pipeline_name: the pipeline name.
    beam_pipeline_args: Beam arguments (default: DirectRunner, multi-processing;
      `configs.local_beam_pipeline_args` picks by data size);
      `quiet_workers.BEAM_PLUGIN_ARG` is added (quiet worker shutdown).
    **kwargs: further `create_pipeline` arguments.
  """
  return pipeline_lib.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=paths.pipeline_root,
      data_root=data_root,
      feature_spec=feature_spec,
      serving_model_dir=paths.serving_model_dir,
      metadata_connection_config=paths.metadata_connection_config(),
      beam_pipeline_args=[*beam_pipeline_args, quiet_workers.BEAM_PLUGIN_ARG],
      **kwargs)


def latest_outputs(paths: LocalPaths, pipeline_name: str,
                   node_id: str) -> Dict[str, metadata_store_pb2.Artifact]:
  """The output artifacts of the latest finished (run or cached) execution of a node.

  Args:
    paths: the run's output layout.
    pipeline_name: the pipeline name.
    node_id: the component id, e.g. `Trainer`.

  Returns:
    Output key -> ML Metadata artifact (`.uri`, `.custom_properties`); empty
    when the node never finished.
  """
  if not os.path.exists(paths.metadata_path):
    return {}
  store = metadata_store.MetadataStore(paths.metadata_connection_config())
  context = store.get_context_by_type_and_name(_NODE_CONTEXT_TYPE, f"{pipeline_name}.{node_id}")
  if context is None:
    return {}
  executions = [e for e in store.get_executions_by_context(context.id)
                if e.last_known_state in _DONE_STATES]
  if not executions:
    return {}
  latest = max(executions, key=lambda e: e.id)
  events = [e for e in store.get_events_by_execution_ids([latest.id])
            if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps]
  artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
  return {event.path.steps[0].key: artifacts[event.artifact_id] for event in events}
