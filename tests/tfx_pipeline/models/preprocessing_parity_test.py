"""The pandas `Preprocessor` and the pipeline's TFT `preprocessing_fn` agree, id for id.

Both run on the same few hundred synthetic rows (with frequency ties, empty
and newline categories, missing values, and unseen ids and categories in
the later rows): tf.Transform's Beam implementation analyses the training
rows and transforms both sets; the pandas path fits on the training rows.
Ids (same unknown id 0, same vocabulary order), one-hots (same OOV slot,
last) and values must be identical.
"""

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from limaml_keras import preprocessing as pandas_preprocessing
from limaml_keras import schema
from limaml_keras import synthetic
from limaml_keras import tensor_layout
from tfx_pipeline.models import preprocessing

pytestmark = pytest.mark.slow  # A tf.Transform Beam run: about a minute on 2 shared cores.

SPEC = synthetic.SPEC
_TRAIN_ROWS, _LATER_ROWS = 300, 60


def _raw_feature_spec():
  """As ExampleGen infers the synthetic CSV: strings, ints, floats; categoricals may be missing."""
  spec = {schema.MEMBER_ID_COLUMN: tf.io.FixedLenFeature([1], tf.string),
          schema.ITEM_ID_COLUMN: tf.io.FixedLenFeature([1], tf.string),
          schema.TIMESTAMP_COLUMN: tf.io.FixedLenFeature([1], tf.int64),
          schema.LABEL_COLUMN: tf.io.FixedLenFeature([1], tf.int64)}
  spec.update({c: tf.io.FixedLenFeature([1], tf.float32) for c in SPEC.numeric_columns()})
  spec.update({c: tf.io.VarLenFeature(tf.string) for c in SPEC.categorical_columns()})
  return spec


def _frames():
  data = synthetic.generate(num_members=40, num_items=30, seed=5).interactions
  frame = data.iloc[:_TRAIN_ROWS + _LATER_ROWS].reset_index(drop=True).copy()
  segment = frame["member_segment"].astype(object)
  segment[5], segment[6], segment[7] = None, "", "bad\nvalue"  # Missing, empty, newline.
  frame["member_segment"] = segment
  train, later = frame.iloc[:_TRAIN_ROWS].copy(), frame.iloc[_TRAIN_ROWS:].copy()
  # Unseen member, item and category values in the later rows.
  later.loc[later.index[:5], "member_id"] = "new-member"
  later.loc[later.index[5:10], "item_id"] = "new-item"
  later.loc[later.index[10:15], "item_category"] = "new-category"
  later.loc[later.index[15:20], "member_segment"] = None
  return train, later


def _instances(frame, raw_feature_spec):
  rows = []
  for record in frame.to_dict("records"):
    row = {}
    for column, feature in raw_feature_spec.items():
      value = record[column]
      if isinstance(feature, tf.io.VarLenFeature):
        row[column] = [] if value is None or (isinstance(value, float) and np.isnan(value)) else [
            str(value).encode()]
      elif feature.dtype == tf.string:
        row[column] = [str(value).encode()]
      else:
        row[column] = [value]
    rows.append(row)
  return rows


@pytest.fixture(scope="module")
def both(tmp_path_factory):
  train, later = _frames()
  raw_feature_spec = _raw_feature_spec()
  metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(
      raw_feature_spec))
  config = {preprocessing.FEATURE_SPEC_KEY: schema.spec_to_json(SPEC)}

  def preprocessing_fn(inputs):
    return preprocessing.preprocessing_fn(inputs, custom_config=config)

  with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp("tft")), force_tf_compat_v1=False):
    (tft_train, _), transform_fn = ((_instances(train, raw_feature_spec), metadata)
                                    | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
    tft_later, _ = (((_instances(later, raw_feature_spec), metadata), transform_fn)
                    | tft_beam.TransformDataset())
  pre = pandas_preprocessing.Preprocessor(SPEC).fit(train)
  return {"train": (tft_train, pre.transform(train)), "later": (tft_later, pre.transform(later)),
          "preprocessor": pre}


def _column(rows, key):
  return np.stack([np.asarray(row[key]) for row in rows])


@pytest.mark.parametrize("split", ["train", "later"])
def test_ids_are_identical(both, split):
  tft_rows, pandas_out = both[split]
  for key in (tensor_layout.MEMBER_ID, tensor_layout.ITEM_ID):
    np.testing.assert_array_equal(_column(tft_rows, key), pandas_out[key], err_msg=key)
  np.testing.assert_array_equal([r[preprocessing.MEMBER_KEY].decode() for r in tft_rows],
                                pandas_out[tensor_layout.MEMBER_KEY])
  if split == "later":  # The unseen ids are the unknown id 0 on both sides.
    assert (pandas_out[tensor_layout.MEMBER_ID][:5] == 0).all()
    assert (pandas_out[tensor_layout.ITEM_ID][5:10] == 0).all()


@pytest.mark.parametrize("split", ["train", "later"])
def test_features_one_hots_and_values_are_identical(both, split):
  tft_rows, pandas_out = both[split]
  for key in (tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES,
              tensor_layout.CONTEXT_FEATURES):
    tft_values = _column(tft_rows, key)
    assert tft_values.shape == pandas_out[key].shape, key
    # z-scores: TFT computes its statistics in float32.
    np.testing.assert_allclose(tft_values, pandas_out[key], atol=2e-5, err_msg=key)
  np.testing.assert_array_equal(_column(tft_rows, tensor_layout.LABEL),
                                pandas_out[tensor_layout.LABEL])
  np.testing.assert_array_equal(_column(tft_rows, preprocessing.TIMESTAMP),
                                pandas_out[tensor_layout.TIMESTAMP])


def test_the_checked_cases_occur(both):
  """The rows exercise ties, the OOV slot (last), and left-out empty/newline values."""
  pre, (_, later) = both["preprocessor"], both["later"]
  counts = pd.Series(_frames()[0]["member_id"]).value_counts()
  assert counts.duplicated().any()  # Frequency ties, broken in reverse order.
  names = pre.feature_names("member")
  oov = names.index("member_segment=<oov>")
  assert oov == len(names) - 1
  assert "member_segment=" not in names and not any("\n" in n for n in names)
  assert (later[tensor_layout.MEMBER_FEATURES][15:20, oov] == 1).all()
