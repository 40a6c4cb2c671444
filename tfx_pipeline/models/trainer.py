"""The Trainer components' `run_fn`: task records -> trained, exported model.

`custom_config` holds a `ModelConfig` dict (`limaml_keras.model_config`) and,
under `TASK_SETTINGS_KEY`, the `TaskSettings` TaskGen made the tasks with;
the model comes from the library's one factory (`limaml_keras.model_factory`).
The function reads the TaskGen records of the `train` and `eval` splits as
task batches, fits the model (LiMAML, or the global baseline), evaluates it
on the evaluation-period tasks (adapting on each member's support when the
model adapts), writes `metrics.json` and TensorBoard logs
(`tensorboard_callback`) to the model-run directory and exports the serving
SavedModel (`tfx_pipeline.models.export`).

Training survives being killed: `tf.keras.callbacks.BackupAndRestore` backs
the model and optimizer up every `BACKUP_EVERY_BATCHES` batches, and a rerun
with the same inputs and config resumes from the last backup, mid-epoch
included. The training data make that exact: epoch `e` visits the tasks in an
order that depends only on `(seed, e)` and the set of task records (not on
the order TaskGen's Beam job wrote them in, which varies between reruns), and
a resumed run skips the batches the backup already covers, so the resumed
model matches an uninterrupted run (up to floating-point summation order).
The backup lives beside the model-run directories, under a fingerprint of
the inputs and config (a TFX rerun gets a new model-run directory), and is
deleted when training completes.

Training distributes with `tf.distribute` (`tfx_pipeline.models.distribution`):
`custom_config["distribution"]` picks the strategy (`auto`: multi-worker when
`TF_CONFIG` names a cluster), the model is built under its scope, and under
multi-worker training only the chief writes `metrics.json` and the export.
"""

import hashlib
import json
import math
import os
from typing import Sequence, Tuple

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from limaml_keras import tensor_layout
from limaml_keras import model_config
from limaml_keras import model_factory
from limaml_keras import task_settings
from tfx_pipeline.models import distribution
from tfx_pipeline.models import export
from tfx_pipeline.models import preprocessing
from tfx_pipeline.components import task_records

METRICS_FILE = "metrics.json"
#: `custom_config` key of the `TaskSettings` (a dict) that made the training tasks.
TASK_SETTINGS_KEY = "task_settings"
#: Batches between two training backups.
BACKUP_EVERY_BATCHES = 100
_SHUFFLE_BUFFER = 10_000
_HASH_BUCKETS = 2**63 - 1
# BackupAndRestore's checkpoint: single-worker directory and counter names.
_BACKUP_CHECKPOINT_DIR = "chief"
_SAVED_EPOCH = "ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"
_SAVED_BATCH = "ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"


def steps_per_epoch(files: Sequence[str], batch_size: int) -> int:
  """Batches of `batch_size` tasks in the task records `files` (the last may be smaller)."""
  records = tf.data.TFRecordDataset(list(files), compression_type="GZIP")
  count = int(records.reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
  if not count:
    raise ValueError(f"no training task in {list(files)}")
  return math.ceil(count / batch_size)


def resume_position(backup_dir: str, steps: int) -> Tuple[int, int]:
  """`(epoch, step)` at which `BackupAndRestore` resumes from `backup_dir`; (0, 0) if none.

  Mirrors Keras' own rule: after a backup at the last batch of an epoch,
  training continues with the next epoch.
  """
  latest = tf.train.latest_checkpoint(os.path.join(backup_dir, _BACKUP_CHECKPOINT_DIR))
  if latest is None:
    return 0, 0
  reader = tf.train.load_checkpoint(latest)
  epoch, batch = int(reader.get_tensor(_SAVED_EPOCH)), int(reader.get_tensor(_SAVED_BATCH))
  if batch < 0:  # Backed up at an epoch end.
    return epoch + 1, 0
  return (epoch + 1, 0) if batch == steps - 1 else (epoch, batch + 1)


def epoch_order(serialized: tf.Tensor, seed: int, epoch: int) -> tf.Tensor:
  """`serialized` task records reordered by a `(seed, epoch)`-keyed hash of their content.

  The order depends on the set of records only, not on the order they come
  in (TaskGen's Beam output is the same set of records on a rerun, in an
  order that varies): records are sorted by a keyed SipHash of their member
  key, ties (the same member key twice) by one of the whole record.

  Args:
    serialized: a vector of serialized task records.
    seed: the training seed.
    epoch: the epoch.

  Returns:
    `serialized`, permuted.
  """
  key = [seed % 2**64, epoch % 2**64]
  member = tf.io.parse_example(serialized, {task_records.MEMBER_KEY: tf.io.FixedLenFeature(
      [], tf.string, default_value="")})[task_records.MEMBER_KEY]
  by_record = tf.argsort(tf.strings.to_hash_bucket_strong(serialized, _HASH_BUCKETS, key),
                         stable=True)
  by_member = tf.strings.to_hash_bucket_strong(tf.gather(member, by_record), _HASH_BUCKETS, key)
  return tf.gather(serialized, tf.gather(by_record, tf.argsort(by_member, stable=True)))


def training_batches(files: Sequence[str], task_format: task_records.TaskFormat,
                     batch_size: int, seed: int, epochs: int, start_epoch: int = 0,
                     start_step: int = 0) -> tf.data.Dataset:
  """Task batches of epochs `start_epoch..epochs-1`, one after the other.

  Epoch `e` shuffles the tasks by `epoch_order(..., seed, e)` over windows of
  `_SHUFFLE_BUFFER` records, whatever ran before, and the first `start_step`
  batches of `start_epoch` are skipped: a run resumed at `(start_epoch,
  start_step)` sees exactly the batches an uninterrupted run would. A split
  of at most `_SHUFFLE_BUFFER` tasks is one window, so its batches do not
  depend on the order of the records in the files either (a larger split's
  windows do).
  """
  records = tf.data.TFRecordDataset(list(files), compression_type="GZIP")
  spec = task_records.parse_spec(task_format)

  def epoch_batches(epoch: int) -> tf.data.Dataset:
    shuffled = records.batch(_SHUFFLE_BUFFER).flat_map(
        lambda window: tf.data.Dataset.from_tensor_slices(epoch_order(window, seed, epoch)))
    return shuffled.batch(batch_size)

  batches = epoch_batches(start_epoch).skip(start_step)
  if start_epoch >= epochs:
    batches = batches.take(0)
  for epoch in range(start_epoch + 1, epochs):
    batches = batches.concatenate(epoch_batches(epoch))
  # Under tf.distribute, every worker reads all records and keeps its replicas'
  # shares of each global batch (not a subset of the files): the global batches
  # stay those of one device, in the same order.
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return batches.map(lambda serialized: tf.io.parse_example(serialized, spec),
                     num_parallel_calls=tf.data.AUTOTUNE).prefetch(
                         tf.data.AUTOTUNE).with_options(options)


def _build(model: tf.keras.Model, task_format: task_records.TaskFormat) -> None:
  """Creates the model's and the optimizer's variables, in a fixed order.

  Keras would create them inside the first training step (the optimizer's
  slots for the variables that got a gradient there); built up front, every
  run has the same checkpoint layout and `BackupAndRestore` restores into
  existing variables instead of deferring the restore.
  """
  model.build({tensor_layout.MEMBER_FEATURES: [None, task_format.member_dim],
               tensor_layout.ITEM_FEATURES: [None, task_format.item_dim],
               tensor_layout.CONTEXT_FEATURES: [None, task_format.context_dim]})
  model.optimizer.build(model.trainable_variables)


def train_model(model: tf.keras.Model, train_files: Sequence[str],
                config: model_config.ModelConfig, backup_dir: str,
                backup_every: int = BACKUP_EVERY_BATCHES,
                callbacks: Sequence[tf.keras.callbacks.Callback] = ()
                ) -> tf.keras.callbacks.History:
  """Fits `model` on task records, resuming from `backup_dir` when it holds a backup.

  Args:
    model: the compiled model.
    train_files: gzipped task-record files.
    config: epochs, batch size and seed.
    backup_dir: where `BackupAndRestore` keeps its backup (deleted when
      training completes).
    backup_every: batches between backups.
    callbacks: more Keras callbacks.

  Returns:
    The history of the epochs run in this call.
  """
  files = task_records._files(train_files)  # pylint: disable=protected-access
  steps = steps_per_epoch(files, config.batch_size)
  start_epoch, start_step = resume_position(backup_dir, steps)
  if (start_epoch, start_step) != (0, 0):
    logging.info("Resuming training from %s at epoch %d, batch %d", backup_dir, start_epoch,
                 start_step)
  task_format = task_records.infer_format(files)
  dataset = training_batches(files, task_format, config.batch_size, config.seed, config.epochs,
                             start_epoch, start_step)
  with model.distribute_strategy.scope():
    _build(model, task_format)
  backup = tf.keras.callbacks.BackupAndRestore(backup_dir, save_freq=backup_every)
  return model.fit(dataset, epochs=config.epochs, steps_per_epoch=steps,
                   callbacks=[backup, *callbacks], verbose=2)


def tensorboard_callback(log_dir: str) -> tf.keras.callbacks.TensorBoard:
  """Per-epoch TensorBoard scalars of every training metric under `log_dir` (TFX convention).

  The Trainers write to their `model_run_dir`, as the TFX templates do: open
  them with `tensorboard --logdir <pipeline root>/Trainer/model_run` (or
  `BaselineTrainer/`). Scalars are `epoch_<metric>` in the `train/` run:
  loss and AUC, and for LiMAML the inner loop's `support_loss_before`,
  `support_loss_after`, `adaptation_gain`, `query_loss` and, with Meta-SGD,
  `inner_lr_<i>` (`limaml_keras.model.LiMAMLModel`).
  """
  return tf.keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch", write_graph=False)


def backup_dir_for(fn_args: tfx.components.FnArgs) -> str:
  """The backup directory of a Trainer run: stable across reruns with the same inputs.

  `<parent of model_run_dir>/backup-<fingerprint of train files, Transform
  output and custom_config>`.
  """
  identity = json.dumps({"train_files": sorted(fn_args.train_files),
                         "transform_output": fn_args.transform_output,
                         "custom_config": fn_args.custom_config or {}}, sort_keys=True)
  fingerprint = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
  parent = os.path.dirname(os.path.normpath(fn_args.model_run_dir))
  return os.path.join(parent, f"backup-{fingerprint}")


def parse_custom_config(custom_config
                        ) -> Tuple[str, model_config.ModelConfig, task_settings.TaskSettings]:
  """`(distribution name, model config, task settings)` of a Trainer's `custom_config`.

  Raises:
    ValueError: an unknown distribution, model-config key or task setting.
  """
  distribution_name, settings = distribution.split_custom_config(custom_config)
  tasks = settings.pop(TASK_SETTINGS_KEY, {})
  try:
    tasks = task_settings.TaskSettings(**tasks)
  except TypeError as e:
    raise ValueError(f"custom_config[{TASK_SETTINGS_KEY!r}]: {e}") from e
  return distribution_name, model_config.ModelConfig.from_dict(settings), tasks


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains the model `fn_args.custom_config` describes and exports it.

  Args:
    fn_args: TFX Trainer arguments; uses `train_files`, `eval_files`,
      `transform_output`, `custom_config`, `model_run_dir` and
      `serving_model_dir`.
  """
  distribution_name, config, tasks = parse_custom_config(fn_args.custom_config)
  strategy = distribution.make_strategy(distribution_name)
  logging.info("Training %s with %s (%d replicas)", config, type(strategy).__name__,
               strategy.num_replicas_in_sync)
  tf.keras.utils.set_random_seed(config.seed)
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  with strategy.scope():
    model = model_factory.build_model(
        config, num_items=tft_output.vocabulary_size_by_name(preprocessing.ITEM_VOCABULARY) + 1,
        num_members=tft_output.vocabulary_size_by_name(preprocessing.MEMBER_VOCABULARY) + 1,
        task_settings=tasks)
  history = train_model(model, fn_args.train_files, config, backup_dir_for(fn_args),
                        callbacks=[tensorboard_callback(fn_args.model_run_dir)])
  eval_format = task_records.infer_format(fn_args.eval_files)
  # One epoch in `epoch_order`: the batches (so the batch-averaged loss) do not
  # depend on the order TaskGen wrote the evaluation tasks in.
  eval_files = task_records._files(fn_args.eval_files)  # pylint: disable=protected-access
  evaluation = training_batches(eval_files, eval_format, config.batch_size, config.seed, epochs=1)
  metrics = model.evaluate(evaluation, return_dict=True, verbose=0)
  summary = {"model": config.model,
             "eval": {k: float(v) for k, v in metrics.items()},
             "train": {k: float(v[-1]) for k, v in history.history.items()},
             "config": config.to_dict()}
  logging.info("Evaluation-period query metrics of %s: %s", config.model, summary["eval"])
  if distribution.writes_outputs(strategy):
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, METRICS_FILE), "w") as f:
      json.dump(summary, f, indent=2)
  export_dir = distribution.worker_output_dir(fn_args.serving_model_dir, strategy)
  export.export_serving_model(model, tft_output, export_dir)
  if export_dir != fn_args.serving_model_dir:  # A non-chief worker's copy.
    tf.io.gfile.rmtree(export_dir)
