"""TensorBoard logs: event files per method and seed, with the MAML probe's quantities."""

import os

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import synthetic
from limaml_keras.evaluation import methods, protocol, tensorboard_logs

pytestmark = pytest.mark.slow


def _scalars(directory):
  values = {}
  for name in os.listdir(directory):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
      for value in event.summary.value:
        values.setdefault(value.tag, []).append(float(tf.make_ndarray(value.tensor)))
  return values


def test_limaml_run_logs_keras_and_maml_scalars(tmp_path):
  data = synthetic.generate(num_members=60, num_items=20, seed=2)
  split = protocol.time_split(data.interactions, data.spec)
  hp = methods.Hyperparameters(epochs=2, meta_hidden=(8,), global_hidden=(8,), embedding_dim=4,
                               learn_inner_lr=True, window=20)
  tasks = methods.training_tasks(hp, split.train)
  root = str(tmp_path)
  run = tensorboard_logs.run_dir(root, "limaml", 0)
  callbacks = [tensorboard_logs.keras_callback(root, "limaml", 0),
               tensorboard_logs.MamlProbe(run, tasks)]
  methods.train("limaml", hp, tasks, split.preprocessor.num_items, split.preprocessor.num_members,
                seed=0, callbacks=callbacks)
  train = _scalars(os.path.join(run, "train"))
  assert len(train["epoch_loss"]) == 2 and len(train["epoch_auc"]) == 2
  maml = _scalars(os.path.join(run, "maml"))
  for tag in ("support_loss_before", "support_loss_after", "adaptation_gain",
              "query_loss_before", "query_loss_after", "inner_lr/0"):
    assert len(maml[tag]) == 2 and all(np.isfinite(maml[tag])), tag
  gain = np.array(maml["support_loss_before"]) - np.array(maml["support_loss_after"])
  np.testing.assert_allclose(maml["adaptation_gain"], gain, rtol=1e-5, atol=1e-6)


def test_evaluation_scalars_use_n_as_step(tmp_path):
  tensorboard_logs.write_evaluation(str(tmp_path), "global", 1,
                                    {0: {"gauc": 0.6, "auc": 0.7, "log_loss": 0.6, "ece": 0.1},
                                     5: {"gauc": float("nan"), "auc": 0.71, "log_loss": 0.6,
                                         "ece": 0.1}})
  values = _scalars(os.path.join(tensorboard_logs.run_dir(str(tmp_path), "global", 1),
                                 "evaluation"))
  assert values["few_shot/auc"] == pytest.approx([0.7, 0.71])
  assert values["few_shot/gauc"] == pytest.approx([0.6])  # NaN (no value) is not logged
