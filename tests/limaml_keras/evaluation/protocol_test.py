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


def test_training_tasks_use_every_training_interaction_once(marked):
  frame, spec, _ = marked
  split = protocol.time_split(frame, spec)
  tasks = protocol.training_tasks(split.train, window=10)
  assert tasks.support_sizes.sum() + tasks.query_sizes.sum() == len(split.train["label"])
  assert (tasks.support_sizes + tasks.query_sizes <= 10).all()
  assert tasks.arrays["support_mask"].shape[1] <= 5


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_bad_query_fraction_is_named(marked, fraction):
  frame, spec, _ = marked
  with pytest.raises(ValueError, match="query_fraction"):
    protocol.time_split(frame, spec, query_fraction=fraction)


def test_bad_window_is_named(marked):
  frame, spec, _ = marked
  split = protocol.time_split(frame, spec)
  with pytest.raises(ValueError, match="window"):
    protocol.training_tasks(split.train, window=1)


def test_empty_training_period_is_named(marked):
  _, spec, _ = marked
  frame = marked[0].copy()
  frame["timestamp"] = 1_700_000_000
  with pytest.raises(ValueError, match="training period is empty"):
    protocol.time_split(frame, spec)
