"""Tests of limaml_keras.catalog: latest raw features per member and item, unknown ids, typing."""

import pytest
import tensorflow as tf

from limaml_keras import catalog as catalog_lib
from limaml_keras import serving_contract
from limaml_keras import schema
from tfx_pipeline import testing

# Member 7 is seen at times 1 and 3 (age 20 then 30); item y at 2 and 3.
ROWS = [dict(zip(testing.RAW_FEATURE_SPEC, row)) for row in testing.ROWS]


def test_types_are_inferred_as_example_gen_does(interactions_csv):
  catalog = catalog_lib.load_catalog(interactions_csv)
  assert {k: v.dtype for k, v in catalog.feature_spec.items()} == {
      "member_id": tf.int64, "item_id": tf.string, "age": tf.float32, "year": tf.int64}


def test_latest_features_per_member_and_item(interactions_csv):
  catalog = catalog_lib.load_catalog(interactions_csv)
  member, known = catalog.member("7")
  assert known and member == {"member_id": "7", "age": "30.0"}
  assert catalog.items(["y", "x"]) == [{"item_id": "y", "year": "2010"},
                                        {"item_id": "x", "year": "1990"}]
  assert catalog.popular_items(1) == ["y"] and catalog.active_members(1) == ["7"]


def test_unknown_member_gets_typical_values(interactions_csv):
  catalog = catalog_lib.load_catalog(interactions_csv)
  member, known = catalog.member("42")
  assert not known
  assert member == {"member_id": "42", "age": 35.0}  # Median of the members' latest ages.
  assert catalog.unknown_member_id() == "9"  # Integer ids: one past the largest.


def test_from_rows_with_the_models_spec_and_bytes_values():
  spec = {k: v for k, v in testing.RAW_FEATURE_SPEC.items() if k not in ("label", "timestamp")}
  catalog = catalog_lib.Catalog.from_rows(ROWS, testing.SPEC, spec)
  assert catalog.items(["x"]) == [{"item_id": "x", "year": 1990}]
  assert catalog.member("8") == ({"member_id": 8, "age": 40.0}, True)


def test_rows_from_raw_examples():
  spec = testing.RAW_FEATURE_SPEC
  text_rows = [{k: v.decode() if isinstance(v, bytes) else v for k, v in row.items()}
               for row in ROWS]
  serialized = [serving_contract.raw_example(row, spec).SerializeToString() for row in text_rows]
  rows = catalog_lib.rows_from_examples(serialized)
  assert rows[0] == {"member_id": 7, "item_id": "x", "timestamp": 1, "label": 1, "age": 20.0,
                     "year": 1990}
  catalog = catalog_lib.Catalog.from_rows(rows, testing.SPEC, spec)
  assert catalog.member("7")[0] == {"member_id": 7, "age": 30.0}
  with pytest.raises(ValueError, match="record 0 is not a tf.Example"):
    catalog_lib.rows_from_examples([b"\xff\xff"])


def test_string_member_ids_get_a_made_up_cold_start_id():
  rows = [{**row, "member_id": f"m{row['member_id']}"} for row in ROWS]
  catalog = catalog_lib.Catalog.from_rows(rows, testing.SPEC)
  assert catalog.feature_spec["member_id"].dtype == tf.string
  assert catalog.unknown_member_id() == catalog_lib.COLD_START_MEMBER


def test_unknown_items_are_named(interactions_csv):
  catalog = catalog_lib.load_catalog(interactions_csv)
  with pytest.raises(catalog_lib.UnknownItemError, match=r"unknown items \['nope'\]"):
    catalog.items(["x", "nope"])


def test_bad_inputs_are_named(interactions_csv, tmp_path):
  with pytest.raises(FileNotFoundError, match="no such interactions CSV"):
    catalog_lib.load_catalog(str(tmp_path / "missing.csv"))
  bad = tmp_path / "bad" / "interactions.csv"
  bad.parent.mkdir()
  bad.write_text("member_id,item_id,timestamp,label\n7,x,1,1\n")
  schema.save_spec(testing.SPEC, str(bad.parent / schema.SPEC_FILE_NAME))
  with pytest.raises(ValueError, match=r"missing columns \['age', 'year'\]"):
    catalog_lib.load_catalog(str(bad))
  rows = [{**ROWS[0], "timestamp": "noon"}]
  with pytest.raises(ValueError, match="row 1: timestamp 'noon'"):
    catalog_lib.Catalog.from_rows(rows, testing.SPEC)
  with pytest.raises(ValueError, match="no interactions"):
    catalog_lib.Catalog.from_rows([], testing.SPEC)
