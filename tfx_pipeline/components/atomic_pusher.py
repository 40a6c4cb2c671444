"""AtomicPusher: TFX's Pusher, but TF Serving never sees a half-written version.

The stock Pusher executor copies the SavedModel file by file straight into
`<base_directory>/<version>/` (only `saved_model.pb` last); a push interrupted
mid-copy leaves a numbered directory TF Serving may try to load. This
executor pushes with `tfx_pipeline.ops.push.push_version` instead: the copy goes
to a hidden temporary directory that is renamed to `<version>` once complete
(and removed on failure). Everything else is the stock behaviour: nothing is
pushed unless the `model_blessing` (and `infra_blessing`, when given) bless
the model, and the `pushed_model` artifact records `pushed`,
`pushed_destination` and `pushed_version` and archives the model.

Only filesystem destinations are supported, like the stock executor;
`versioning` AUTO and UNIX_TIMESTAMP both give a version of at least the
current Unix time and above every existing version.
"""

import os
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx import v1 as tfx
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from tfx_pipeline.ops import push


def _filesystem_destination(
    exec_properties: Dict[str, Any]) -> pusher_pb2.PushDestination.Filesystem:
  destination = pusher_pb2.PushDestination()
  proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                            destination)
  kind = destination.WhichOneof("destination")
  if kind != "filesystem":
    raise ValueError(f"AtomicPusher pushes to a filesystem destination only, got {kind!r}")
  if destination.filesystem.versioning not in (pusher_pb2.Versioning.AUTO,
                                               pusher_pb2.Versioning.UNIX_TIMESTAMP):
    raise ValueError("AtomicPusher supports versioning AUTO and UNIX_TIMESTAMP, got "
                     f"{pusher_pb2.Versioning.Name(destination.filesystem.versioning)}")
  if not destination.filesystem.base_directory:
    raise ValueError("AtomicPusher needs push_destination.filesystem.base_directory")
  return destination.filesystem


class Executor(pusher_executor.Executor):
  """Pushes a blessed model atomically (module docstring)."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """Pushes `model` to `<base_directory>/<version>` if blessed.

    Args:
      input_dict: `model`, and optionally `model_blessing` / `infra_blessing`.
      output_dict: `pushed_model`, a one-artifact list.
      exec_properties: `push_destination`, the JSON of a `PushDestination`
        with a filesystem destination.
    """
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    filesystem = _filesystem_destination(exec_properties)
    model_path = self.GetModelPath(input_dict)
    serving_path = push.push_version(model_path, filesystem.base_directory)
    logging.info("Model pushed atomically to serving path %s.", serving_path)
    # Archive the pushed model with the artifact, as the stock executor does.
    io_utils.copy_dir(model_path, model_push.uri)
    self._MarkPushed(model_push, pushed_destination=serving_path,
                     pushed_version=os.path.basename(serving_path))


class AtomicPusher(tfx.components.Pusher):
  """`tfx.components.Pusher` with the atomic executor; same inputs, outputs and settings."""

  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
