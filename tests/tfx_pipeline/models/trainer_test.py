"""Tests of the Trainer's resumable training (`train_model`) and its backup directory."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx

from limaml_keras import tensor_layout
from limaml_keras import testing
from limaml_keras import model_config
from limaml_keras import model_factory
from limaml_keras import task_settings
from tfx_pipeline.components import task_records
from tfx_pipeline.models import trainer

NUM_TASKS, NUM_ITEMS = 22, 10
# 22 tasks in batches of 4: 6 steps per epoch, the last one smaller.
CONFIG = model_config.ModelConfig(epochs=2, batch_size=4, learning_rate=1e-2, embedding_dim=4,
                                  meta_hidden=(8,), global_hidden=(8,), item_embedding_dim=4,
                                  seed=3)


@pytest.fixture(scope="module")
def train_files(tmp_path_factory):
  batch = testing.random_task_batch(num_tasks=NUM_TASKS, support=4, query=3, num_items=NUM_ITEMS)
  path = str(tmp_path_factory.mktemp("tasks") / "tasks.gz")
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for t in range(NUM_TASKS):
      task = {key: value[t] for key, value in batch.items()}
      writer.write(task_records.encode(task, f"m{t}".encode(), 4, 3))
  return [path]


def _model():
  tf.keras.utils.set_random_seed(CONFIG.seed)  # As run_fn does.
  return model_factory.build_model(CONFIG, num_items=NUM_ITEMS, num_members=NUM_TASKS + 1)


class _Interrupt(tf.keras.callbacks.Callback):
  """Raises at the end of the `at`-th batch of the run (a crash mid-epoch)."""

  def __init__(self, at):
    super().__init__()
    self._at, self._seen = at, 0

  def on_train_batch_end(self, batch, logs=None):
    self._seen += 1
    if self._seen == self._at:
      raise RuntimeError("killed")


def _state(model):
  return ([v.numpy() for v in model.trainable_weights],
          [v.numpy() for v in model.optimizer.variables])


@pytest.mark.slow
def test_training_resumes_mid_epoch_and_matches_an_uninterrupted_run(tmp_path, train_files):
  assert trainer.steps_per_epoch(train_files, CONFIG.batch_size) == 6
  uninterrupted = _model()
  trainer.train_model(uninterrupted, train_files, CONFIG, str(tmp_path / "a"), backup_every=2)
  assert not tf.io.gfile.glob(str(tmp_path / "a" / "chief" / "*"))  # Deleted when done.

  backup_dir = str(tmp_path / "b")
  with pytest.raises(RuntimeError, match="killed"):
    # Backups after batches 2, 4, 6 and 8 (epoch 1, step 1); killed after batch 9.
    trainer.train_model(_model(), train_files, CONFIG, backup_dir, backup_every=2,
                        callbacks=[_Interrupt(at=9)])
  assert trainer.resume_position(backup_dir, 6) == (1, 2)
  resumed = _model()  # A rerun: same config, so same global seed.
  history = trainer.train_model(resumed, train_files, CONFIG, backup_dir, backup_every=2)
  assert len(history.history["loss"]) == 1  # Only the interrupted epoch was left.

  weights, optimizer = _state(resumed)
  expected_weights, expected_optimizer = _state(uninterrupted)
  assert int(resumed.optimizer.iterations) == 12
  for got, expected in zip(weights + optimizer, expected_weights + expected_optimizer):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
  batch = testing.random_task_batch(num_tasks=3, support=4, query=3, num_items=NUM_ITEMS, seed=5)
  np.testing.assert_allclose(resumed.adapt(batch), uninterrupted.adapt(batch), atol=1e-5)


@pytest.mark.slow
def test_epochs_are_shuffled_by_seed_and_epoch_only(train_files):
  task_format = task_records.infer_format(train_files)

  def member_ids(**kwargs):
    dataset = trainer.training_batches(train_files, task_format, 4, seed=3, epochs=3, **kwargs)
    return np.concatenate([b[tensor_layout.MEMBER_ID].numpy() for b in dataset])

  full = member_ids()
  assert full.shape == (3 * NUM_TASKS,)
  for epoch in range(3):
    assert sorted(full[epoch * NUM_TASKS:(epoch + 1) * NUM_TASKS]) == list(range(1, 23))
  assert not np.array_equal(full[:NUM_TASKS], full[NUM_TASKS:2 * NUM_TASKS])
  np.testing.assert_array_equal(member_ids(start_epoch=1, start_step=2), full[NUM_TASKS + 8:])
  assert not list(trainer.training_batches(train_files, task_format, 4, seed=3, epochs=3,
                                          start_epoch=3))


@pytest.mark.slow
def test_epochs_do_not_depend_on_the_record_order_in_the_files(train_files, tmp_path):
  # A rerun of TaskGen writes the same records in another order, over other shards.
  records = list(tf.data.TFRecordDataset(train_files, compression_type="GZIP").as_numpy_iterator())
  permuted = [records[i] for i in np.random.default_rng(0).permutation(len(records))]
  shards = []
  for shard in range(3):
    shards.append(str(tmp_path / f"tasks-{shard}.gz"))
    with tf.io.TFRecordWriter(shards[-1], "GZIP") as writer:
      for record in permuted[shard::3]:
        writer.write(record)
  task_format = task_records.infer_format(train_files)

  def member_ids(files):
    dataset = trainer.training_batches(files, task_format, 4, seed=3, epochs=2)
    return np.concatenate([b[tensor_layout.MEMBER_ID].numpy() for b in dataset])

  np.testing.assert_array_equal(member_ids(shards), member_ids(train_files))
  assert not np.array_equal(member_ids(train_files)[:NUM_TASKS], np.arange(1, NUM_TASKS + 1))


def test_epoch_order_is_a_permutation_keyed_by_seed_and_epoch(train_files):
  serialized = tf.constant(list(
      tf.data.TFRecordDataset(train_files, compression_type="GZIP").as_numpy_iterator()))
  order = trainer.epoch_order(serialized, seed=1, epoch=0).numpy()
  assert sorted(order) == sorted(serialized.numpy())
  np.testing.assert_array_equal(trainer.epoch_order(serialized[::-1], seed=1, epoch=0), order)
  assert not np.array_equal(trainer.epoch_order(serialized, seed=1, epoch=1), order)
  assert not np.array_equal(trainer.epoch_order(serialized, seed=2, epoch=0), order)


def test_resume_position_without_a_backup(tmp_path):
  assert trainer.resume_position(str(tmp_path / "none"), 6) == (0, 0)


def _scalar_tags(log_dir):
  tags = set()
  for path in tf.io.gfile.glob(os.path.join(log_dir, "train", "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(value.tag for value in event.summary.value)
  return tags


@pytest.mark.slow
@pytest.mark.parametrize("config", [CONFIG.replace(learn_inner_lr=True), CONFIG.baseline()],
                         ids=["limaml", "global"])
def test_training_writes_tensorboard_scalars_per_epoch(tmp_path, train_files, config):
  tf.keras.utils.set_random_seed(config.seed)
  model = model_factory.build_model(config, num_items=NUM_ITEMS, num_members=NUM_TASKS + 1)
  log_dir = str(tmp_path / "model_run")
  trainer.train_model(model, train_files, config, str(tmp_path / "backup"),
                      callbacks=[trainer.tensorboard_callback(log_dir)])
  tags = _scalar_tags(log_dir)
  assert {"epoch_loss", "epoch_auc"} <= tags
  maml = {"epoch_support_loss_before", "epoch_support_loss_after", "epoch_adaptation_gain",
          "epoch_query_loss", "epoch_inner_lr_0"}
  if config.model == model_config.LIMAML:
    assert config.learn_inner_lr and maml <= tags
  else:
    assert not maml & tags


def test_backup_dir_is_stable_across_reruns_and_keyed_by_inputs(tmp_path):
  def fn_args(run, config):
    return tfx.components.FnArgs(
        train_files=["/p/TaskGen/tasks/5/Split-train/*"], transform_output="/p/Transform/7",
        custom_config=config, model_run_dir=str(tmp_path / "model_run" / run))

  first = trainer.backup_dir_for(fn_args("11", {"epochs": 2}))
  assert first == trainer.backup_dir_for(fn_args("12", {"epochs": 2}))
  assert os.path.dirname(first) == str(tmp_path / "model_run")
  assert first != trainer.backup_dir_for(fn_args("12", {"epochs": 3}))


def test_custom_config_carries_the_task_settings_to_the_model():
  tasks = task_settings.DEFAULTS.replace(task_history=10)
  custom = {**CONFIG.baseline().to_dict(), "distribution": "one_device",
            trainer.TASK_SETTINGS_KEY: dataclasses.asdict(tasks)}
  name, config, parsed = trainer.parse_custom_config(custom)
  assert (name, config, parsed) == ("one_device", CONFIG.baseline(), tasks)
  # The baseline fits only the query side of history tasks (each interaction once).
  model = model_factory.build_model(config, NUM_ITEMS, NUM_TASKS + 1, task_settings=parsed)
  assert model.fit_support is False
  assert trainer.parse_custom_config(CONFIG.to_dict())[2] == task_settings.DEFAULTS
  with pytest.raises(ValueError, match="task_settings"):
    trainer.parse_custom_config({trainer.TASK_SETTINGS_KEY: {"windw": 3}})
