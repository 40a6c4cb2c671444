"""The Trainer's `tf.distribute` strategy, chosen by its `custom_config` and `TF_CONFIG`.

`custom_config["distribution"]` (absent: `auto`):

* `auto`: `multi_worker` when `TF_CONFIG` describes a cluster of more than one
  training task (chief and workers; what Vertex AI sets on every replica of a
  multi-replica worker pool), else `mirrored` when more than one GPU is visible,
  else `one_device`.
* `one_device`: TensorFlow's default strategy (no distribution).
* `mirrored`: `MirroredStrategy` over every local GPU, or every logical CPU
  device when there is no GPU (tests split the CPU into two).
* `multi_worker`: `MultiWorkerMirroredStrategy`; the cluster comes from
  `TF_CONFIG`.

Every strategy runs the model's `train_step` once per replica on its share of
the global batch; the models scale their loss by the global number of tasks
(`limaml_keras.model`), the optimizer all-reduces the gradients, metrics are
summed across replicas. With `multi_worker` every worker runs the same
`run_fn`: all of them train, evaluate and export (saving is collective), but
only the chief writes where TFX looks (`writes_outputs`, `worker_output_dir`).
`tf.keras.callbacks.BackupAndRestore` keeps the chief's backup under
`<backup_dir>/chief` and other workers' in temporary directories.

The keys of TFX's Vertex AI Trainer extension (`ai_platform_*`, see
`tfx_pipeline.kubeflow_v2_runner.vertex_training_config`) travel in the same
`custom_config`; `model_settings` leaves them and this module's key out.
"""

import json
import os
from typing import Any, Dict, Mapping, Optional, Tuple

import tensorflow as tf

DISTRIBUTION_KEY = "distribution"
AUTO = "auto"
ONE_DEVICE = "one_device"
MIRRORED = "mirrored"
MULTI_WORKER = "multi_worker"
STRATEGIES = (AUTO, ONE_DEVICE, MIRRORED, MULTI_WORKER)
#: Prefix of the `custom_config` keys TFX's Vertex AI (AI Platform) Trainer extension reads.
VERTEX_KEY_PREFIX = "ai_platform_"
_TRAINING_TASK_TYPES = ("chief", "worker")


def split_custom_config(custom_config: Optional[Mapping[str, Any]]) -> Tuple[str, Dict[str, Any]]:
  """`(distribution, model settings)` of a Trainer's `custom_config`.

  Raises:
    ValueError: an unknown distribution name.
  """
  custom_config = dict(custom_config or {})
  distribution = custom_config.pop(DISTRIBUTION_KEY, AUTO)
  if distribution not in STRATEGIES:
    raise ValueError(f"custom_config[{DISTRIBUTION_KEY!r}] must be one of {list(STRATEGIES)}, "
                     f"got {distribution!r}")
  return distribution, {k: v for k, v in custom_config.items()
                        if not k.startswith(VERTEX_KEY_PREFIX)}


def model_settings(custom_config: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
  """The model-config part of a Trainer's `custom_config`."""
  return split_custom_config(custom_config)[1]


def tf_config(environ: Mapping[str, str] = os.environ) -> Dict[str, Any]:
  """The parsed `TF_CONFIG` environment variable; `{}` when unset.

  Raises:
    ValueError: `TF_CONFIG` is not a JSON object.
  """
  text = environ.get("TF_CONFIG", "")
  if not text.strip():
    return {}
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {text[:200]!r}") from None
  if not isinstance(value, dict):
    raise ValueError(f"TF_CONFIG must be a JSON object, got {text[:200]!r}")
  return value


def training_tasks(environ: Mapping[str, str] = os.environ) -> int:
  """Chief and worker tasks of the `TF_CONFIG` cluster (0 without `TF_CONFIG`)."""
  cluster = tf_config(environ).get("cluster", {})
  return sum(len(cluster.get(task_type, ())) for task_type in _TRAINING_TASK_TYPES)


def resolve(distribution: str, environ: Mapping[str, str] = os.environ) -> str:
  """The strategy `auto` stands for here; other names unchanged."""
  if distribution != AUTO:
    return distribution
  if training_tasks(environ) > 1:
    return MULTI_WORKER
  if len(tf.config.list_logical_devices("GPU")) > 1:
    return MIRRORED
  return ONE_DEVICE


def make_strategy(distribution: str = AUTO,
                  environ: Mapping[str, str] = os.environ) -> tf.distribute.Strategy:
  """The strategy for `distribution` (one of `STRATEGIES`).

  Create it before any other TensorFlow op runs in the process (a
  `MultiWorkerMirroredStrategy` starts the worker's gRPC server).

  Raises:
    ValueError: an unknown name, or `multi_worker` without a `TF_CONFIG` cluster.
  """
  if distribution not in STRATEGIES:
    raise ValueError(f"distribution must be one of {list(STRATEGIES)}, got {distribution!r}")
  distribution = resolve(distribution, environ)
  if distribution == ONE_DEVICE:
    return tf.distribute.get_strategy()
  if distribution == MIRRORED:
    devices = (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if not training_tasks(environ):
    raise ValueError("distribution 'multi_worker' needs TF_CONFIG with a cluster of chief/worker "
                     "tasks (Vertex AI and Kubeflow's TFJob set it on every replica)")
  return tf.distribute.MultiWorkerMirroredStrategy()


def _task(strategy: tf.distribute.Strategy) -> Tuple[Optional[str], Optional[int]]:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return None, None
  return resolver.task_type, resolver.task_id


def writes_outputs(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the Trainer's outputs: the chief, or worker 0 without one."""
  task_type, task_id = _task(strategy)
  if task_type is None or task_type == "chief":
    return True
  has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
  return task_type == "worker" and task_id == 0 and not has_chief


def worker_output_dir(path: str, strategy: tf.distribute.Strategy) -> str:
  """`path` for the process that `writes_outputs`, else a per-worker directory beside it.

  Saving under `MultiWorkerMirroredStrategy` is collective, so every worker
  saves; the others save into this directory and delete it afterwards.
  """
  if writes_outputs(strategy):
    return path
  task_type, task_id = _task(strategy)
  parent, name = os.path.split(os.path.normpath(path))
  return os.path.join(parent, f".{name}.{task_type}-{task_id}")
