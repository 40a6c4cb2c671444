"""Tests of FeatureSpec <-> JSON and spec discovery."""

import os

import pytest

from limaml_keras import schema
from limaml_keras import synthetic
from limaml_keras.datasets import MOVIELENS_SPEC
from tfx_pipeline import spec_io


@pytest.mark.parametrize("spec", [synthetic.SPEC, MOVIELENS_SPEC, schema.FeatureSpec()])
def test_json_round_trip(spec, tmp_path):
  assert spec_io.spec_from_json(spec_io.spec_to_json(spec)) == spec
  path = spec_io.save_spec(spec, str(tmp_path / "features.json"))
  assert spec_io.load_spec(path) == spec


def test_absent_fields_are_empty():
  spec = spec_io.spec_from_json('{"item_numeric": ["year"]}')
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
    spec_io.spec_from_json(text)


def test_load_spec_names_the_file(tmp_path):
  path = tmp_path / "features.json"
  path.write_text('{"bogus": []}')
  with pytest.raises(ValueError, match=str(path)):
    spec_io.load_spec(str(path))


def test_find_spec_file_next_to_csv_and_in_directory(tmp_path):
  spec_path = spec_io.save_spec(synthetic.SPEC, str(tmp_path / spec_io.SPEC_FILE_NAME))
  (tmp_path / "train").mkdir()
  assert spec_io.find_spec_file(str(tmp_path / "interactions.csv")) == spec_path
  assert spec_io.find_spec_file(str(tmp_path)) == spec_path
  assert spec_io.find_spec_file(str(tmp_path / "train")) == spec_path


def test_find_spec_file_says_what_to_do(tmp_path):
  with pytest.raises(FileNotFoundError, match="pass --spec"):
    spec_io.find_spec_file(os.path.join(str(tmp_path), "interactions.csv"))
