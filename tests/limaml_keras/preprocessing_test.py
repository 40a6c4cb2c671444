"""Tests of the pandas preprocessing (normalisation, vocabularies, validation)."""

import json

import numpy as np
import pandas as pd
import pytest

from limaml_keras import tensor_layout
from limaml_keras import preprocessing
from limaml_keras import schema

SPEC = schema.FeatureSpec(
    member_numeric=("age",),
    member_categorical=("segment",),
    item_numeric=("price", "constant"),
    item_categorical=("category",),
    context_numeric=("hour",),
)


def _frame(**overrides):
  frame = pd.DataFrame({
      "member_id": ["m1", "m1", "m2", "m3"],
      "item_id": ["i1", "i2", "i1", "i3"],
      "timestamp": [10, 20, 15, 30],
      "label": [1, 0, 0, 1],
      "age": [20.0, 20.0, 40.0, 60.0],
      "segment": ["a", "a", "b", "a"],
      "price": [1.0, 2.0, 3.0, 4.0],
      "constant": [0.1, 0.1, 0.1, 0.1],
      "category": ["x", "y", "x", "z"],
      "hour": [0.0, 1.0, 0.5, 0.5],
  })
  for column, values in overrides.items():
    frame[column] = values
  return frame


@pytest.fixture
def fitted():
  return preprocessing.Preprocessor(SPEC).fit(_frame())


def test_transform_shapes_dtypes_and_dims(fitted):
  out = fitted.transform(_frame())
  assert fitted.member_feature_dim == 1 + 2 + 1  # age, segment: a, b, oov
  assert fitted.item_feature_dim == 2 + 3 + 1  # price, constant, category: x, z, y, oov
  assert fitted.context_feature_dim == 1
  assert (fitted.num_members, fitted.num_items) == (4, 4)
  expected = {
      tensor_layout.MEMBER_ID: ((4,), np.int64),
      tensor_layout.ITEM_ID: ((4,), np.int64),
      tensor_layout.MEMBER_FEATURES: ((4, 4), np.float32),
      tensor_layout.ITEM_FEATURES: ((4, 6), np.float32),
      tensor_layout.CONTEXT_FEATURES: ((4, 1), np.float32),
      tensor_layout.LABEL: ((4,), np.float32),
      preprocessing.TIMESTAMP: ((4,), np.int64),
  }
  for key, (shape, dtype) in expected.items():
    assert out[key].shape == shape, key
    assert out[key].dtype == dtype, key
  np.testing.assert_array_equal(out[preprocessing.MEMBER_KEY], ["m1", "m1", "m2", "m3"])


def test_numeric_columns_are_z_scored_and_constant_columns_centred(fitted):
  out = fitted.transform(_frame())
  age = out[tensor_layout.MEMBER_FEATURES][:, 0]
  np.testing.assert_allclose([age.mean(), age.std()], [0.0, 1.0], atol=1e-6)
  np.testing.assert_array_equal(out[tensor_layout.ITEM_FEATURES][:, 1], 0.0)
  assert np.isfinite(out[tensor_layout.ITEM_FEATURES]).all()


def test_categoricals_are_one_hot_with_an_oov_slot(fitted):
  assert fitted.feature_names("member") == ["age", "segment=a", "segment=b", "segment=<oov>"]
  out = fitted.transform(_frame(segment=["b", "new", None, "a"]))
  np.testing.assert_array_equal(out[tensor_layout.MEMBER_FEATURES][:, 1:],
                                [[0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 0, 0]])


def test_vocabularies_are_by_frequency_ties_reverse_lexicographic():
  # TFT's order: decreasing count, ties by reverse byte order; empty and newline values
  # are not vocabulary entries.
  frame = _frame(category=["y", "x", "", "z\n"])
  pre = preprocessing.Preprocessor(SPEC).fit(pd.concat([_frame(), frame, _frame().iloc[:1]]))
  assert pre.get_config()["state"]["vocabularies"]["category"] == ["x", "y", "z"]
  assert pre.get_config()["state"]["vocabularies"]["segment"] == ["a", "b"]
  assert pre.get_config()["state"]["member_vocabulary"] == ["m1", "m3", "m2"]
  out = pre.transform(frame)
  assert out[tensor_layout.ITEM_FEATURES][:, 2:].argmax(axis=1).tolist() == [1, 0, 3, 3]


def test_config_of_another_encoding_is_refused(fitted):
  config = fitted.get_config()
  config.pop("encoding")
  with pytest.raises(ValueError, match="fit the preprocessor again"):
    preprocessing.Preprocessor.from_config(config)


def test_many_oov_buckets_hash_stably():
  pre = preprocessing.Preprocessor(SPEC, oov_buckets=3).fit(_frame())
  assert pre.feature_names("member")[3:6] == ["segment=<oov>0", "segment=<oov>1",
                                              "segment=<oov>2"]
  unseen = _frame(segment=["new1", "new2", "new3", None])
  first = pre.transform(unseen)[tensor_layout.MEMBER_FEATURES][:, 3:6]
  second = pre.transform(unseen)[tensor_layout.MEMBER_FEATURES][:, 3:6]
  np.testing.assert_array_equal(first, second)
  np.testing.assert_array_equal(first.sum(axis=1), 1.0)
  assert first[3, 0] == 1.0  # missing -> slot 0
  assert pre.transform(unseen)[tensor_layout.MEMBER_ID].max() <= 3  # ids keep one OOV index


def test_ids_index_from_one_and_unseen_ids_map_to_zero(fitted):
  out = fitted.transform(_frame(member_id=["m2", "nobody", "m1", "m3"],
                                item_id=["i3", "i1", "unseen", "i2"]))
  # By frequency (m1, i1 twice), ties in reverse order: members m1, m3, m2; items i1, i3, i2.
  np.testing.assert_array_equal(out[tensor_layout.MEMBER_ID], [3, 0, 1, 2])
  np.testing.assert_array_equal(out[tensor_layout.ITEM_ID], [2, 1, 0, 3])


def test_vocabularies_and_statistics_come_only_from_the_fitted_frame():
  train, test = _frame().iloc[:2], _frame().iloc[2:]
  pre = preprocessing.Preprocessor(SPEC).fit(train)
  out = pre.transform(test)
  assert pre.num_members == 2
  np.testing.assert_array_equal(out[tensor_layout.MEMBER_ID], [0, 0])
  assert pre.get_config()["state"]["numeric_stats"]["price"] == [1.5, 0.5]


def test_config_is_json_and_round_trips(fitted, tmp_path):
  config = json.loads(json.dumps(fitted.get_config()))
  restored = preprocessing.Preprocessor.from_config(config)
  assert restored.spec == SPEC
  frame = _frame(member_id=["m3", "x", "m1", "m2"])
  for key, value in fitted.transform(frame).items():
    np.testing.assert_array_equal(restored.transform(frame)[key], value, err_msg=key)
  path = str(tmp_path / "preprocessor.json")
  fitted.save(path)
  assert preprocessing.Preprocessor.load(path).get_config() == fitted.get_config()


def test_unfitted_config_round_trips_and_transform_refuses():
  pre = preprocessing.Preprocessor.from_config(
      preprocessing.Preprocessor(SPEC, oov_buckets=2).get_config())
  assert (pre.is_fitted, pre.oov_buckets) == (False, 2)
  with pytest.raises(RuntimeError, match="not fitted"):
    pre.transform(_frame())


def test_no_context_features_gives_an_empty_matrix():
  spec = schema.FeatureSpec(member_numeric=("age",))
  out = preprocessing.Preprocessor(spec).fit_transform(_frame())
  assert out[tensor_layout.CONTEXT_FEATURES].shape == (4, 0)
  assert out[tensor_layout.ITEM_FEATURES].shape == (4, 0)


def test_inference_frames_may_lack_label_and_timestamp(fitted):
  frame = _frame().drop(columns=["label", "timestamp"])
  out = fitted.transform(frame, inference=True)
  assert tensor_layout.LABEL not in out and preprocessing.TIMESTAMP not in out
  with pytest.raises(ValueError, match=r"missing columns: \['timestamp', 'label'\]"):
    fitted.transform(frame)


@pytest.mark.parametrize("frame, pattern", [
    (_frame().drop(columns=["price", "segment"]), r"missing columns: \['segment', 'price'\]"),
    (_frame().iloc[:0], "empty"),
    (_frame(price=[1.0, "abc", 2.0, 3.0]), r"'price' has non-numeric values \('abc' in 1 row"),
    (_frame(label=[1, "yes", 0, 1]), r"'label' has non-numeric values \('yes'"),
    (_frame(age=[1.0, np.nan, 2.0, 3.0]), r"'age' has NaN or infinite values in 1 row\(s\), "
     r"e.g. row 1"),
    (_frame(hour=[1.0, np.inf, 2.0, 3.0]), "'hour' has NaN or infinite"),
    (_frame(label=[1.0, np.nan, 0.0, 1.0]), "'label' has NaN"),
    (_frame(label=[1, 2, 0, 1]), "'label' must be 0 or 1, got 2"),
    (_frame(timestamp=[1.5, 2, 3, 4]), "'timestamp' must hold whole Unix seconds"),
    (_frame(member_id=["m1", None, "m2", "m3"]), "'member_id' has missing values"),
])
def test_bad_frames_raise_naming_the_problem(frame, pattern):
  with pytest.raises(ValueError, match=pattern):
    preprocessing.Preprocessor(SPEC).fit(frame)


def test_bad_frames_at_transform_raise_too(fitted):
  with pytest.raises(ValueError, match="'price' has non-numeric"):
    fitted.transform(_frame(price=["1", "2", "x", "4"]))
  with pytest.raises(ValueError, match="expected a pandas DataFrame"):
    fitted.transform({"member_id": ["m1"]})


def test_oov_buckets_must_be_positive():
  with pytest.raises(ValueError, match="oov_buckets"):
    preprocessing.Preprocessor(SPEC, oov_buckets=0)


def test_read_raw_csv_keeps_ids_and_categories_as_strings(tmp_path):
  frame = _frame(member_id=["007", "007", "42", "1"], segment=["1", "1", "2", "01"])
  path = tmp_path / "raw.csv"
  frame.to_csv(path, index=False)
  loaded = preprocessing.read_raw_csv_frame(str(path), SPEC)
  assert list(loaded["member_id"]) == ["007", "007", "42", "1"]
  assert list(loaded["segment"]) == ["1", "1", "2", "01"]
