"""The test-batch helpers produce valid task batches and inert padding."""

import numpy as np

from limaml_keras import tensor_layout as F
from limaml_keras.task_batch import validate_task_batch
from limaml_keras.testing import pad_task_batch, random_task_batch

import tensorflow as tf


def test_random_task_batch_has_the_documented_layout():
  batch = random_task_batch(num_tasks=3, support=4, query=2, member_dim=5, item_dim=6,
                            context_dim=1)
  assert set(batch) == set(F.task_keys())
  assert batch["support_item_features"].shape == (3, 4, 6)
  assert batch["query_context_features"].shape == (3, 2, 1)
  validate_task_batch({k: tf.constant(v) for k, v in batch.items()}, require_member_id=True)


def test_pad_task_batch_appends_masked_slots():
  batch = random_task_batch(num_tasks=2, support=3, query=1)
  padded = pad_task_batch(batch, 2, fill=9.0)
  assert padded["support_mask"].shape == (2, 5)
  np.testing.assert_array_equal(padded["query_mask"][:, 1:], 0)
  np.testing.assert_array_equal(padded["support_item_features"][:, 3:], 9.0)
  np.testing.assert_array_equal(padded["support_label"][:, :3], batch["support_label"])
