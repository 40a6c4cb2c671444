"""Masked per-task losses, and their scaling for `tf.distribute`.

Losses are means over the real (mask = 1) interactions of each task; padding
has exactly zero effect on them and on their gradients. Under a multi-replica
strategy each replica returns its share of the *global* batch's mean
(`global_mean`), so summing replicas' gradients, as the optimizer does, gives
the one-device step on the same global batch.
"""

import tensorflow as tf

def _replica_context():
  """The replica context of a multi-replica `tf.distribute` step, else None."""
  context = tf.distribute.get_replica_context()
  return context if context is not None and context.num_replicas_in_sync > 1 else None


def global_mean(numerator, denominator):
  """This replica's share of a mean over the *global* batch.

  `numerator / sum over replicas of denominator`: summed over replicas (what
  the optimizer does with replicas' gradients) it is the mean over the global
  batch, so a step on R replicas equals one step on one device with the same
  global batch. Without distribution (one replica) it is `numerator / denominator`.
  Denominators below 1 count as 1 (a batch without any target has loss 0).
  """
  context = _replica_context()
  if context is not None:
    denominator = context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(denominator))
  return numerator / tf.maximum(denominator, 1.0)


def sum_over_replicas(value):
  """`value` summed over the replicas of a distributed step (a constant); `value` otherwise."""
  context = _replica_context()
  if context is None:
    return value
  return context.all_reduce(tf.distribute.ReduceOp.SUM, tf.stop_gradient(value))


def replica_share(value):
  """`value / replicas in sync`: a per-replica term (regularisation) counted once in total."""
  context = _replica_context()
  return value if context is None else value / context.num_replicas_in_sync


def masked_task_losses(logits, labels, mask):
  """Per-task mean binary cross-entropy over real (mask=1) interactions.

  Args:
    logits: `[T, L]`.
    labels: `[T, L]` in {0, 1}.
    mask: `[T, L]`, 1 for real interactions, 0 for padding.

  Returns:
    `(losses, counts)`: `[T]` per-task mean loss (0 for a task with no real
    interaction) and `[T]` number of real interactions. Padded entries have
    exactly zero effect on both, and on their gradients.
  """
  per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
  # tf.where, not multiplication: a non-finite logit at a padded slot must not leak NaN.
  per_example = tf.where(mask > 0, per_example, tf.zeros_like(per_example))
  counts = tf.reduce_sum(mask, axis=1)
  return tf.reduce_sum(per_example, axis=1) / tf.maximum(counts, 1.0), counts


def masked_pairwise_losses(logits, labels, mask):
  """Per-task mean pairwise logistic loss over (positive, negative) pairs of real interactions.

  For every task, the mean over pairs (i, j) with i positive and j negative of
  `softplus(-(logit_i - logit_j))` (RankNet / BPR), weighted by
  `label_i * (1 - label_j)` so soft labels count fractionally. Only score
  differences within a task enter, so the loss is invariant to adding a
  per-task constant to the logits: it rewards re-ordering a member's items,
  not a member-level offset.

  Args:
    logits: `[T, L]`.
    labels: `[T, L]` in [0, 1].
    mask: `[T, L]`, 1 for real interactions, 0 for padding.

  Returns:
    `(losses, pairs)`: `[T]` per-task mean pair loss (0 for a task without a
    positive-negative pair) and `[T]` the pair weight sums. Padding has
    exactly zero effect on both and on their gradients.
  """
  positive = labels * mask
  negative = (1.0 - labels) * mask
  weight = positive[:, :, tf.newaxis] * negative[:, tf.newaxis, :]
  difference = logits[:, :, tf.newaxis] - logits[:, tf.newaxis, :]
  # tf.where, not multiplication: a non-finite padded logit must not leak NaN.
  per_pair = tf.where(weight > 0, tf.nn.softplus(-tf.where(weight > 0, difference, 0.0)), 0.0)
  pairs = tf.reduce_sum(weight, axis=[1, 2])
  return tf.reduce_sum(per_pair * weight, axis=[1, 2]) / tf.maximum(pairs, 1e-6), pairs


def ranking_loss(logits, labels, mask):
  """Mean over the tasks that have a positive-negative pair of `masked_pairwise_losses`.

  This replica's share of the global batch's mean (`global_mean`).
  """
  losses, pairs = masked_pairwise_losses(logits, labels, mask)
  has_pair = tf.cast(pairs > 0, tf.float32)
  return global_mean(tf.reduce_sum(losses * has_pair), tf.reduce_sum(has_pair))
