"""`serving_contract`: what a serving request carries, and its rows as `tf.Example`s."""

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import schema
from limaml_keras import serving_contract
from limaml_keras import tensor_layout as F

_RAW_SPEC = {
    "member_id": tf.io.FixedLenFeature([], tf.string),
    "item_id": tf.io.FixedLenFeature([], tf.string),
    "age": tf.io.FixedLenFeature([], tf.float32),
    "year": tf.io.FixedLenFeature([], tf.int64),
    schema.LABEL_COLUMN: tf.io.FixedLenFeature([], tf.float32),
    schema.TIMESTAMP_COLUMN: tf.io.FixedLenFeature([], tf.int64),
}


def test_a_request_carries_neither_label_nor_timestamp():
  spec = serving_contract.serving_feature_spec(_RAW_SPEC)
  assert set(spec) == {"member_id", "item_id", "age", "year"}
  assert spec["age"] is _RAW_SPEC["age"]


def test_a_row_round_trips_through_tf_example_with_each_columns_dtype():
  spec = serving_contract.serving_feature_spec(_RAW_SPEC)
  row = {"member_id": "m7", "item_id": b"i\xc3\xa9", "age": "25.5", "year": "1999",
         "label": "1", "unrelated": object()}  # CSV strings; extra columns are ignored
  example = serving_contract.raw_example(row, spec)
  parsed = tf.io.parse_single_example(example.SerializeToString(), spec)
  assert parsed["member_id"].numpy() == b"m7"
  assert parsed["item_id"].numpy() == b"i\xc3\xa9"  # bytes are kept as they are
  assert parsed["age"].numpy() == np.float32(25.5)
  assert parsed["year"].numpy() == 1999
  assert set(example.features.feature) == set(spec)


def test_a_missing_column_is_named():
  spec = serving_contract.serving_feature_spec(_RAW_SPEC)
  with pytest.raises(ValueError, match="serving request lacks column 'year'"):
    serving_contract.raw_example({"member_id": "m", "item_id": "i", "age": 1.0}, spec)


def test_the_adapt_signature_takes_a_task_batchs_member_and_support_keys():
  support_keys = [k for k in F.task_keys() if k.startswith(F.SUPPORT)]
  assert serving_contract.ADAPT_INPUTS == (F.MEMBER_ID, F.MEMBER_FEATURES, *support_keys)
