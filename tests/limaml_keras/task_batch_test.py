"""Task batches: the checks that name bad input, and the support-side operations."""

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras.task_batch import (as_new_members, drop_member_ids, labelled_support_pool,
                                     sample_support_sizes, support_history, validate_task_batch)
from limaml_keras.testing import random_task_batch


def as_tensors(batch):
  return {k: tf.convert_to_tensor(v) for k, v in batch.items()}


@pytest.fixture
def batch():
  return as_tensors(random_task_batch(num_tasks=5, support=6, query=4, seed=1))


def test_missing_key_is_named(batch):
  del batch["support_label"]
  with pytest.raises(ValueError, match="missing keys.*support_label"):
    validate_task_batch(batch)


def test_wrong_rank_is_named(batch):
  batch["query_item_features"] = batch["query_item_features"][:, :, 0]
  with pytest.raises(ValueError, match="'query_item_features' must have rank 3"):
    validate_task_batch(batch)


def test_wrong_dtype_is_named(batch):
  batch["support_item_id"] = tf.strings.as_string(batch["support_item_id"])
  with pytest.raises(ValueError, match="'support_item_id' must be int"):
    validate_task_batch(batch)


def test_mismatched_task_counts_are_named(batch):
  batch["member_features"] = batch["member_features"][:3]
  with pytest.raises(ValueError, match="number of tasks"):
    validate_task_batch(batch)


def test_mismatched_feature_sizes_between_sides_are_named(batch):
  batch["query_item_features"] = batch["query_item_features"][:, :, :2]
  with pytest.raises(ValueError, match="item_features size"):
    validate_task_batch(batch)


def test_empty_task_batch_is_named(batch):
  empty = {k: v[:0] for k, v in batch.items()}
  with pytest.raises(ValueError, match="0 tasks"):
    validate_task_batch(empty)


def test_support_history_summarises_positives_and_negatives_by_hand():
  batch = random_task_batch(num_tasks=1, support=3, item_dim=2)
  batch["support_item_features"][0] = [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]
  batch["support_label"][0] = [1.0, 0.0, 1.0]
  batch["support_mask"][0] = [1.0, 1.0, 0.0]
  history = support_history(as_tensors(batch)).numpy()[0]
  np.testing.assert_allclose(history, [1, 2, 3, 4, np.log(2), np.log(2)], rtol=1e-6)


def test_support_items_pool_item_embeddings_by_label_by_hand():
  batch = {"support_label": tf.constant([[1.0, 0.0, 1.0, 0.0]]),
           "support_mask": tf.constant([[1.0, 1.0, 1.0, 0.0]])}
  values = tf.constant([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [9.0, 9.0]]])
  pooled = labelled_support_pool(batch, values).numpy()[0]
  np.testing.assert_allclose(pooled, [3.0, 4.0, 3.0, 4.0, np.log(3.0), np.log(2.0)], rtol=1e-6)
  empty = labelled_support_pool(batch, tf.zeros([1, 4, 0])).numpy()[0]
  np.testing.assert_allclose(empty, [np.log(3.0), np.log(2.0)], rtol=1e-6)


def test_count_cap_clips_only_the_counts():
  batch = {"support_label": tf.constant([[1.0, 1.0, 1.0, 0.0]]),
           "support_mask": tf.constant([[1.0, 1.0, 1.0, 1.0]])}
  values = tf.constant([[[1.0], [2.0], [6.0], [4.0]]])
  pooled = labelled_support_pool(batch, values, count_cap=2.0).numpy()[0]
  np.testing.assert_allclose(pooled, [3.0, 4.0, np.log(3.0), np.log(2.0)], rtol=1e-6)
  history = support_history({**batch, "support_item_features": values}, count_cap=1.0)
  np.testing.assert_allclose(history.numpy()[0], [3.0, 4.0, np.log(2.0), np.log(2.0)], rtol=1e-6)


def test_sampled_support_sizes_keep_each_tasks_latest_k(batch):
  mask = np.zeros((40, 6), np.float32)
  sizes = np.arange(40) % 7
  for t, n in enumerate(sizes):
    mask[t, :n] = 1.0
  tf.random.set_seed(0)
  out = sample_support_sizes({"support_mask": tf.constant(mask)}, [0, 2])["support_mask"].numpy()
  kept = out.sum(axis=1)
  assert set(kept) <= {0, 1, 2} and {0, 2} <= set(kept)
  for t, n in enumerate(sizes):
    k = int(kept[t])
    assert k == 0 or k == min(2, n)
    np.testing.assert_array_equal(out[t, n - k:n], 1.0)       # the latest k
    assert out[t, :n - k].sum() == 0 and out[t, n:].sum() == 0
  assert sample_support_sizes({"support_mask": mask}, [])["support_mask"] is mask


def test_dropped_member_ids_become_the_unknown_id_at_the_rate():
  ids = tf.range(1, 4001, dtype=tf.int64)
  batch = {"member_id": ids, "member_features": tf.zeros([4000, 2])}
  tf.random.set_seed(0)
  out = drop_member_ids(batch, 0.3)
  dropped = out["member_id"].numpy() == 0
  assert 0.27 < dropped.mean() < 0.33
  np.testing.assert_array_equal(out["member_id"].numpy()[~dropped], ids.numpy()[~dropped])
  assert out["member_features"] is batch["member_features"]
  assert drop_member_ids(batch, 0.0) is batch
  assert drop_member_ids({"member_features": tf.zeros([3, 2])}, 0.5).keys() == {"member_features"}


def test_as_new_members_drops_the_support_and_the_id_only(batch):
  out = as_new_members(batch)
  assert not out["support_mask"].numpy().any()
  assert not out["member_id"].numpy().any()
  for key in set(batch) - {"support_mask", "member_id"}:
    assert out[key] is batch[key]
  assert batch["support_mask"].numpy().any()  # The input batch is not changed.
  without_id = {k: v for k, v in batch.items() if k != "member_id"}
  assert "member_id" not in as_new_members(without_id)
