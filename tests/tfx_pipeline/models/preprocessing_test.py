"""Tests of the Transform `preprocessing_fn` on a tiny data set, run by tf.Transform's Beam impl."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from limaml_keras import tensor_layout
from limaml_keras import schema
from tfx_pipeline.models import preprocessing
from tfx_pipeline import testing

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

# Context has no column: its features are [N, 0]. member_id is INT, as ExampleGen
# infers for numeric-looking ids (MovieLens); gender may be missing, so it is sparse.
SPEC = schema.FeatureSpec(member_numeric=("age",), member_categorical=("gender",),
                          item_numeric=("year",))
# The tiny spec of `tfx_pipeline.testing` plus the sparse `gender` column before `year`.
RAW_FEATURE_SPEC = {k: v for k, v in testing.RAW_FEATURE_SPEC.items() if k != "year"}
RAW_FEATURE_SPEC.update(gender=tf.io.VarLenFeature(tf.string),
                        year=testing.RAW_FEATURE_SPEC["year"])
TRAIN = [(7, b"x", 1, 1, 20.0, b"f", 1990), (8, b"y", 2, 0, 40.0, b"m", 2000),
         (7, b"y", 3, 1, 30.0, b"f", 2010)]
# Unknown member, item and gender; then a missing gender.
LATER = [(9, b"z", 4, 0, 30.0, b"other", 2000), (7, b"x", 5, 1, 30.0, None, 2000)]


def _instances(rows):
  return testing.instances(rows, RAW_FEATURE_SPEC)


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
  metadata = dataset_metadata.DatasetMetadata(
      schema_utils.schema_from_feature_spec(RAW_FEATURE_SPEC))
  config = {preprocessing.FEATURE_SPEC_KEY: schema.spec_to_json(SPEC)}

  def preprocessing_fn(inputs):
    return preprocessing.preprocessing_fn(inputs, custom_config=config)

  with tft_beam.Context(temp_dir=str(tmp_path_factory.mktemp("tft")), force_tf_compat_v1=False):
    (train, _), transform_fn = ((_instances(TRAIN), metadata)
                                | tft_beam.AnalyzeAndTransformDataset(preprocessing_fn))
    later, _ = (((_instances(LATER), metadata), transform_fn)
                | tft_beam.TransformDataset())
  return train, later


def test_ids_are_vocabulary_indices_with_zero_for_unknown(transformed):
  train, later = transformed
  member_ids = [row[tensor_layout.MEMBER_ID] for row in train]
  assert member_ids[0] == member_ids[2] != member_ids[1]
  assert sorted(set(member_ids)) == [1, 2]
  assert sorted({row[tensor_layout.ITEM_ID] for row in train}) == [1, 2]
  assert later[0][tensor_layout.MEMBER_ID] == 0 and later[0][tensor_layout.ITEM_ID] == 0
  assert [row[preprocessing.MEMBER_KEY] for row in train] == [b"7", b"8", b"7"]


def test_sides_are_z_scored_and_one_hot(transformed):
  train, later = transformed
  member = np.stack([row[tensor_layout.MEMBER_FEATURES] for row in train])
  # age z-scored (mean 30, population std), then gender one-hot: 2 values + 1 OOV slot.
  np.testing.assert_allclose(member[:, 0], [-1.2247449, 1.2247449, 0.0], rtol=1e-5)
  assert member.shape == (3, 4)
  np.testing.assert_array_equal(member[:, 1:].sum(axis=1), 1)
  assert member[0, 1:].tolist() == member[2, 1:].tolist() != member[1, 1:].tolist()
  for row in later:  # Unseen and missing genders both take the OOV slot.
    np.testing.assert_array_equal(row[tensor_layout.MEMBER_FEATURES][1:], [0, 0, 1])
  item = np.stack([row[tensor_layout.ITEM_FEATURES] for row in train])
  np.testing.assert_allclose(item[:, 0], [-1.2247449, 0.0, 1.2247449], rtol=1e-5)
  assert all(row[tensor_layout.CONTEXT_FEATURES].shape == (0,) for row in train)


def test_label_and_timestamp_pass_through(transformed):
  train, _ = transformed
  assert [row[tensor_layout.LABEL] for row in train] == [1.0, 0.0, 1.0]
  assert [row[preprocessing.TIMESTAMP] for row in train] == [1, 2, 3]
