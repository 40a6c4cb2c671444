"""`protocol_names`: every named protocol makes a split.

That the names load without TensorFlow is `import_direction_test`'s CLI check
(`limaml evaluate` lists them in `--help`).
"""

import numpy as np
import pytest

from limaml_keras import synthetic
from limaml_keras.evaluation import experiment, protocol_names


@pytest.fixture(scope="module")
def data():
  generated = synthetic.generate(num_members=60, num_items=30, seed=4)
  return generated.interactions, generated.spec


@pytest.mark.parametrize("name", protocol_names.PROTOCOLS)
def test_every_protocol_makes_a_split_with_scored_members(data, name):
  split, scored = experiment.make_split(*data, name)
  assert len(scored) > 0 and scored.query_sizes.sum() > 0
  train_members = set(np.asarray(split.train["member_key"]).astype(str))
  scored_members = set(np.asarray(scored.member_ids).astype(str))
  if name == "member-heldout":  # only the held-out members, none of them seen in training
    assert scored_members <= set(map(str, split.held_out_members))
    assert not scored_members & train_members
  elif name == "member":  # every scored member with an earlier interaction was seen in training
    counts = data[0].groupby("member_id").size()
    assert scored_members & set(counts[counts >= 2].index.astype(str)) <= train_members
    assert len(scored_members & train_members) > 0


def test_an_unknown_protocol_is_named(data):
  with pytest.raises(ValueError, match="unknown protocol 'random'; choose from"):
    experiment.make_split(*data, "random")

