"""Masked per-task losses: padding has no effect; the pairwise term ignores per-task offsets."""

import numpy as np
import tensorflow as tf

from limaml_keras.losses import (global_mean, masked_pairwise_losses, masked_task_losses,
                                 ranking_loss, replica_share, sum_over_replicas)
from limaml_keras.testing import random_task_batch


def test_masked_task_losses_average_real_interactions_only():
  logits = tf.constant([[0.0, 2.0, 1e6], [0.0, 0.0, 0.0]])
  labels = tf.constant([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
  mask = tf.constant([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  losses, counts = masked_task_losses(logits, labels, mask)
  expected = (np.log(2.0) + np.log1p(np.exp(2.0))) / 2
  np.testing.assert_allclose(losses.numpy(), [expected, 0.0], rtol=1e-6)
  np.testing.assert_allclose(counts.numpy(), [2.0, 0.0])


def test_global_mean_without_distribution_is_the_mean():
  assert float(global_mean(tf.constant(6.0), tf.constant(3.0))) == 2.0
  assert float(global_mean(tf.constant(0.0), tf.constant(0.0))) == 0.0  # No target: loss 0.
  assert float(sum_over_replicas(tf.constant(5.0))) == 5.0
  assert float(replica_share(tf.constant(5.0))) == 5.0


def test_pairwise_loss_by_hand():
  logits = tf.constant([[2.0, 0.5, -1.0, 7.0]])
  labels = tf.constant([[1.0, 0.0, 0.0, 1.0]])
  mask = tf.constant([[1.0, 1.0, 1.0, 0.0]])  # The last slot is padding.
  losses, pairs = masked_pairwise_losses(logits, labels, mask)
  expected = (np.log1p(np.exp(-1.5)) + np.log1p(np.exp(-3.0))) / 2
  np.testing.assert_allclose(losses.numpy(), [expected], rtol=1e-6)
  np.testing.assert_allclose(pairs.numpy(), [2.0])


def test_pairwise_loss_ignores_a_per_task_constant_shift():
  batch = {k: tf.convert_to_tensor(v) for k, v in
           random_task_batch(num_tasks=5, support=6, query=4, seed=1).items()}
  logits = tf.random.normal(batch["query_label"].shape, seed=3)
  shift = tf.constant([[-5.0], [0.0], [2.5], [40.0], [1e-3]])
  labels, mask = batch["query_label"], batch["query_mask"]
  before, pairs = masked_pairwise_losses(logits, labels, mask)
  after, _ = masked_pairwise_losses(logits + shift, labels, mask)
  assert float(tf.reduce_sum(pairs)) > 0
  np.testing.assert_allclose(after.numpy(), before.numpy(), rtol=1e-5)
  # ... and its gradient w.r.t. the logits sums to zero in every task (no offset is learnt).
  with tf.GradientTape() as tape:
    tape.watch(logits)
    value = ranking_loss(logits, labels, mask)
  np.testing.assert_allclose(tf.reduce_sum(tape.gradient(value, logits), axis=1).numpy(), 0.0,
                             atol=1e-6)


def test_pairwise_loss_is_zero_without_a_pair_and_padding_has_no_effect():
  logits = tf.constant([[1.0, 2.0, 1e6], [0.3, -0.2, 0.0]])
  labels = tf.constant([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
  mask = tf.constant([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
  with tf.GradientTape() as tape:
    tape.watch(logits)
    losses, pairs = masked_pairwise_losses(logits, labels, mask)
  grads = tape.gradient(losses, logits).numpy()
  assert losses.numpy()[0] == 0.0 and pairs.numpy()[0] == 0.0
  assert np.isfinite(grads).all() and np.all(grads[:, 2] == 0) and np.all(grads[0] == 0)
  assert grads[1, 0] < 0 < grads[1, 1]  # Pushes the positive up, the negative down.
