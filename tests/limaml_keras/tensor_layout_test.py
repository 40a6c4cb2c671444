"""`tensor_layout`: the task-batch keys, as the batch builders produce them."""

import pytest

from limaml_keras import tensor_layout as F
from limaml_keras.testing import random_task_batch


def test_side_key_names_a_sides_field():
  assert F.side_key(F.SUPPORT, F.LABEL) == "support_label"
  assert F.side_key(F.QUERY, F.MASK) == "query_mask"


def test_side_key_rejects_an_unknown_side():
  with pytest.raises(ValueError, match="side must be 'support' or 'query', got 'train'"):
    F.side_key("train", F.LABEL)


def test_task_keys_are_the_keys_of_a_task_batch():
  keys = F.task_keys()
  assert len(keys) == len(set(keys)) == 2 + 2 * len(F.INTERACTION_KEYS)
  assert keys[:2] == (F.MEMBER_ID, F.MEMBER_FEATURES)
  assert set(random_task_batch(num_tasks=2, support=3, query=2, seed=0)) == set(keys)
