"""FeatureSpec: validation, the features.json dict/JSON forms and spec discovery."""

import os

import pytest

from limaml_keras import schema
from limaml_keras import synthetic
from limaml_keras.datasets import MOVIELENS_SPEC


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



@pytest.mark.parametrize("spec", [synthetic.SPEC, MOVIELENS_SPEC, schema.FeatureSpec()])
def test_json_round_trip(spec, tmp_path):
  assert schema.spec_from_json(schema.spec_to_json(spec)) == spec
  path = schema.save_spec(spec, str(tmp_path / "features.json"))
  assert schema.load_spec(path) == spec


def test_absent_fields_are_empty():
  spec = schema.spec_from_json('{"item_numeric": ["year"]}')
  assert spec == schema.FeatureSpec(item_numeric=("year",))


@pytest.mark.parametrize("text, message", [
    ('{"member_numerics": ["a"]}', "unknown feature spec fields \\['member_numerics'\\]"),
    ('{"member_numeric": "age"}', "'member_numeric' must be a list"),
    ('{"member_numeric": ["label"]}', "reserved key columns"),
    ('["age"]', "must be a JSON object"),
    ("{", "not valid JSON"),
])
def test_bad_spec_is_rejected(text, message):
  with pytest.raises(ValueError, match=message):
    schema.spec_from_json(text)


def test_load_spec_names_the_file(tmp_path):
  path = tmp_path / "features.json"
  path.write_text('{"bogus": []}')
  with pytest.raises(ValueError, match=str(path)):
    schema.load_spec(str(path))


def test_find_spec_file_next_to_csv_and_in_directory(tmp_path):
  spec_path = schema.save_spec(synthetic.SPEC, str(tmp_path / schema.SPEC_FILE_NAME))
  (tmp_path / "train").mkdir()
  assert schema.find_spec_file(str(tmp_path / "interactions.csv")) == spec_path
  assert schema.find_spec_file(str(tmp_path)) == spec_path
  assert schema.find_spec_file(str(tmp_path / "train")) == spec_path


def test_find_spec_file_says_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError, match="pass --spec"):
    schema.find_spec_file(os.path.join(str(tmp_path), "interactions.csv"))
