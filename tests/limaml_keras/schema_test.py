"""FeatureSpec: validation and the features.json dict form."""

import pytest

from limaml_keras import schema


def test_to_dict_lists_every_field():
  spec = schema.FeatureSpec(member_numeric=("age",), item_categorical=("genre",))
  assert spec.to_dict() == {
      "member_numeric": ["age"], "member_categorical": [], "item_numeric": [],
      "item_categorical": ["genre"], "context_numeric": [], "context_categorical": []}
  assert schema.FeatureSpec(**{k: tuple(v) for k, v in spec.to_dict().items()}) == spec


def test_columns_in_header_order():
  spec = schema.FeatureSpec(member_numeric=("a",), item_numeric=("b",), context_categorical=("c",))
  assert spec.all_columns() == ("member_id", "item_id", "timestamp", "label", "a", "b", "c")
  assert spec.side("item") == (("b",), ())


def test_duplicate_columns_are_named():
  with pytest.raises(ValueError, match=r"more than once: \['x'\]"):
    schema.FeatureSpec(member_numeric=("x",), item_numeric=("x",))


def test_reserved_columns_are_named():
  with pytest.raises(ValueError, match=r"reserved key columns as features: \['label'\]"):
    schema.FeatureSpec(item_numeric=("label",))


def test_unknown_side_is_named():
  with pytest.raises(ValueError, match="side must be"):
    schema.FeatureSpec().side("user")
