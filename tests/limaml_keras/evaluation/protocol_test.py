"""The time protocol never lets query-period data into training, vocabularies or support."""

import numpy as np
import pandas as pd
import pytest

from limaml_keras import tensor_layout as F
from limaml_keras import synthetic
from limaml_keras.evaluation import protocol


@pytest.fixture(scope="module")
def marked():
  """Synthetic data whose query-period rows all use items never seen before the cutoff."""
  data = synthetic.generate(num_members=300, num_items=80, seed=3)
  frame = data.interactions.copy()
  cutoff = protocol.cutoff_at_quantile(frame, protocol.DEFAULT_QUERY_FRACTION)
  later = frame["timestamp"] >= cutoff
  frame.loc[later, "item_id"] = "q_" + frame.loc[later, "item_id"]
  return frame, data.spec, cutoff


def test_training_period_ends_before_the_cutoff(marked):
  frame, spec, cutoff = marked
  split = protocol.time_split(frame, spec)
  assert split.cutoff == cutoff
  assert split.train["timestamp"].max() < cutoff
  assert len(split.train["label"]) == int((frame["timestamp"] < cutoff).sum())


def test_vocabularies_come_from_the_training_period_only(marked):
  frame, spec, _ = marked
  split = protocol.time_split(frame, spec)
  item_vocabulary = split.preprocessor.get_config()["state"]["item_vocabulary"]
  assert not any(str(item).startswith("q_") for item in item_vocabulary)
  assert (split.train[F.ITEM_ID] > 0).all()


def test_support_holds_only_training_period_interactions(marked):
  frame, spec, cutoff = marked
  split = protocol.time_split(frame, spec)
  arrays = split.evaluation.arrays
  support_items = arrays["support_item_id"][arrays["support_mask"] > 0]
  query_items = arrays["query_item_id"][arrays["query_mask"] > 0]
  assert (support_items > 0).all()   # known items: from before the cutoff
  assert (query_items == 0).all()    # every query item is a query-period item
  assert split.evaluation.query_sizes.sum() == int((frame["timestamp"] >= cutoff).sum())


def test_cold_start_members_are_scored_without_support(marked):
  frame, spec, cutoff = marked
  split = protocol.time_split(frame, spec)
  first_seen = frame.groupby("member_id")["timestamp"].min()
  new_members = set(first_seen[first_seen >= cutoff].index)
  cold = set(np.asarray(split.evaluation.member_ids)[split.evaluation.cold_start])
  assert new_members and cold == new_members


def test_validation_split_stays_inside_the_training_period(marked):
  frame, spec, cutoff = marked
  validation = protocol.validation_split(frame, spec)
  assert validation.cutoff < cutoff
  before = int((frame["timestamp"] < cutoff).sum())
  assert len(validation.train["label"]) + validation.evaluation.query_sizes.sum() == before
  vocabulary = validation.preprocessor.get_config()["state"]["item_vocabulary"]
  assert not any(str(item).startswith("q_") for item in vocabulary)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_query_fraction_is_named(marked, fraction):
  frame, spec, _ = marked
  with pytest.raises(ValueError, match="query_fraction"):
    protocol.time_split(frame, spec, query_fraction=fraction)


def test_empty_training_period_is_named(marked):
  _, spec, _ = marked
  frame = marked[0].copy()
  frame["timestamp"] = 1_700_000_000
  with pytest.raises(ValueError, match="training period is empty"):
    protocol.time_split(frame, spec)


# ------------------------------------------------------------------ member protocol
@pytest.fixture(scope="module")
def interactions():
  data = synthetic.generate(num_members=120, num_items=60, seed=5)
  return data.interactions.copy(), data.spec


def _by_member(frame):
  return {m: g for m, g in frame.groupby(frame["member_id"].astype(str))}


def test_member_query_is_each_members_latest_fifth(interactions):
  frame, _ = interactions
  is_query = protocol.member_query_rows(frame, 0.2)
  for member, rows in _by_member(frame.assign(q=is_query)).items():
    n = len(rows)
    assert rows["q"].sum() == max(1, int(np.floor(0.2 * n)))
    if n > 1:
      assert rows.loc[rows["q"], "timestamp"].min() >= rows.loc[~rows["q"], "timestamp"].max()


def test_member_split_is_leak_free(interactions):
  frame, spec = interactions
  split = protocol.member_split(frame, spec)
  tasks = split.evaluation
  arrays = tasks.arrays
  assert split.protocol == "member" and split.cutoff is None
  # Every query timestamp >= the member's support and training timestamps.
  train_last = pd.Series(split.train["timestamp"]).groupby(split.train["member_key"]).max()
  query_first = frame[protocol.member_query_rows(frame)].groupby("member_id")["timestamp"].min()
  common = train_last.index.intersection(query_first.index.astype(str))
  assert len(common) > 100
  query_first.index = query_first.index.astype(str)
  assert (query_first[common] >= train_last[common]).all()
  # Query holds exactly the query rows; training rows are everything else.
  assert tasks.query_sizes.sum() == int(protocol.member_query_rows(frame).sum())
  assert len(split.train["label"]) + tasks.query_sizes.sum() == len(frame)
  # Support holds the member's latest training rows (all of them below the cap).
  expected = np.minimum(frame.groupby(frame["member_id"].astype(str)).size().reindex(
      tasks.member_ids).to_numpy() - tasks.query_sizes, protocol.DEFAULT_MAX_SUPPORT)
  np.testing.assert_array_equal(tasks.support_sizes, expected)
  assert (arrays["support_mask"].sum(axis=1) == tasks.support_sizes).all()


def test_single_interaction_members_are_cold_start_query_only(interactions):
  frame, spec = interactions
  single = frame.iloc[:1].assign(member_id="lonely")
  split = protocol.member_split(pd.concat([frame, single], ignore_index=True), spec)
  index = list(split.evaluation.member_ids).index("lonely")
  assert split.evaluation.support_sizes[index] == 0
  assert split.evaluation.query_sizes[index] == 1
  assert "lonely" not in set(split.train["member_key"])


def test_held_out_members_are_absent_from_training(interactions):
  frame, spec = interactions
  split = protocol.member_split(frame, spec, held_out_fraction=0.2, seed=7)
  held_out = set(split.held_out_members)
  assert len(held_out) == round(0.2 * frame["member_id"].nunique())
  assert not held_out & set(split.train["member_key"])
  # They are still evaluated, adapted from their own earlier interactions.
  members = list(split.evaluation.member_ids)
  sizes = {m: s for m, s in zip(members, split.evaluation.support_sizes)}
  assert held_out <= set(members)
  assert sum(sizes[m] for m in held_out) > 0
  # Their member ids are unknown to the vocabulary (fitted on training data only).
  rows = np.isin(split.evaluation.member_ids, list(held_out))
  assert (split.evaluation.arrays["member_id"][rows] == 0).all()
  again = protocol.member_split(frame, spec, held_out_fraction=0.2, seed=7)
  assert again.held_out_members == split.held_out_members


def test_member_validation_split_never_sees_the_query_rows(interactions):
  frame, spec = interactions
  marked = frame.copy()
  is_query = protocol.member_query_rows(marked)
  marked.loc[is_query, "item_id"] = "q_" + marked.loc[is_query, "item_id"]
  validation = protocol.member_validation_split(marked, spec)
  vocabulary = validation.preprocessor.get_config()["state"]["item_vocabulary"]
  assert not any(str(item).startswith("q_") for item in vocabulary)
  arrays = validation.evaluation.arrays
  assert (arrays["query_item_id"][arrays["query_mask"] > 0] > 0).all()
  total = len(validation.train["label"]) + validation.evaluation.query_sizes.sum()
  assert total == int((~is_query).sum())


@pytest.mark.parametrize("n", protocol.FEW_SHOT_SIZES)
def test_truncation_keeps_the_latest_n_support_interactions(interactions, n):
  frame, spec = interactions
  tasks = protocol.member_split(frame, spec).evaluation
  cut = protocol.truncate_support(tasks, n)
  np.testing.assert_array_equal(cut.support_sizes, np.minimum(tasks.support_sizes, n))
  for t in range(0, len(tasks), 7):
    size, kept = tasks.support_sizes[t], cut.support_sizes[t]
    for name in ("item_id", "label", "mask"):
      full = tasks.arrays["support_" + name][t, :size]
      np.testing.assert_array_equal(cut.arrays["support_" + name][t, :kept], full[size - kept:])
      assert not cut.arrays["support_" + name][t, kept:].any()
  for key in ("query_item_id", "query_label", "member_features"):
    np.testing.assert_array_equal(cut.arrays[key], tasks.arrays[key])


def test_member_split_bad_arguments_are_named(interactions):
  frame, spec = interactions
  with pytest.raises(ValueError, match="query_fraction"):
    protocol.member_split(frame, spec, query_fraction=1.0)
  with pytest.raises(ValueError, match="held_out_fraction"):
    protocol.member_split(frame, spec, held_out_fraction=1.0)
  with pytest.raises(ValueError, match="support size"):
    protocol.truncate_support(protocol.member_split(frame, spec).evaluation, -1)
