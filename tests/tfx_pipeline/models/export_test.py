"""Tests of `tfx_pipeline.models.export`: request examples and the Trainer model's signatures."""

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras import serving_contract
from tfx_pipeline.models import export
from tfx_pipeline import testing

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

RAW_SPEC = {k: v for k, v in testing.RAW_FEATURE_SPEC.items() if k not in ("label", "timestamp")}


def test_raw_example_casts_each_value_to_its_column_dtype():
  example = serving_contract.raw_example({"member_id": "7", "item_id": b"x", "age": "20.5", "year": 1990,
                                "unused": "ignored"}, RAW_SPEC)
  feature = example.features.feature
  assert feature["member_id"].int64_list.value == [7]
  assert feature["item_id"].bytes_list.value == [b"x"]  # bytes kept, not "b'x'".
  assert feature["age"].float_list.value == [20.5]
  assert feature["year"].int64_list.value == [1990]
  assert "unused" not in feature


def test_raw_example_names_a_missing_column():
  with pytest.raises(ValueError, match="'age'"):
    serving_contract.raw_example({"member_id": 7, "item_id": "x", "year": 1990}, RAW_SPEC)


def empty_support(adapt, member_id: int, support: int = 3):
  """`adapt`'s inputs for one member (member features -1.22) with `support` masked-out rows."""
  inputs = {tensor_layout.MEMBER_ID: tf.constant([member_id], tf.int64),
            tensor_layout.MEMBER_FEATURES: tf.constant([[-1.2247449]], tf.float32)}
  for name, spec in adapt.structured_input_signature[1].items():
    if name not in inputs:
      shape = [1, support] + ([spec.shape[-1]] if spec.shape.rank == 3 else [])
      inputs[name] = tf.zeros(shape, spec.dtype)
  return inputs


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  tft_output = testing.transform_output(str(tmp_path_factory.mktemp("transform")))
  model = testing.untrained_model(tft_output)
  path = str(tmp_path_factory.mktemp("model") / "1")
  export.export_serving_model(model, tft_output, path)
  return tf.saved_model.load(path), serving_contract.serving_feature_spec(tft_output.raw_feature_spec())


def test_adapt_with_empty_support_gives_the_cold_start_embedding(exported):
  loaded, raw_spec = exported
  signatures = loaded.signatures
  assert {serving_contract.SERVING_SIGNATURE, serving_contract.PREDICT_WITH_EMBEDDING_SIGNATURE,
          serving_contract.ADAPT_SIGNATURE} <= set(signatures)
  request = serving_contract.raw_example({"member_id": 7, "item_id": "x", "age": 20.0, "year": 1990},
                               raw_spec).SerializeToString()
  served = signatures[serving_contract.SERVING_SIGNATURE](examples=tf.constant([request]))
  adapt = signatures[serving_contract.ADAPT_SIGNATURE]
  cold = adapt(**empty_support(adapt, member_id=7))[tensor_layout.META_EMBEDDING]
  with_cold = signatures[serving_contract.PREDICT_WITH_EMBEDDING_SIGNATURE](
      examples=tf.constant([request]), meta_embedding=cold)
  np.testing.assert_allclose(with_cold[serving_contract.LOGITS].numpy(), served[serving_contract.LOGITS].numpy(),
                             rtol=1e-5, atol=1e-6)


def test_adapt_adds_the_member_id_row_of_a_model_with_a_member_id_embedding(tmp_path):
  tft_output = testing.transform_output(str(tmp_path / "transform"))
  model = testing.untrained_model(tft_output, member_id_embedding=True)
  path = str(tmp_path / "model" / "1")
  export.export_serving_model(model, tft_output, path)
  adapt = tf.saved_model.load(path).signatures[serving_contract.ADAPT_SIGNATURE]
  rows = model.member_embedding.embeddings.numpy()
  unknown = adapt(**empty_support(adapt, member_id=0))[tensor_layout.META_EMBEDDING].numpy()[0]
  for index in range(1, rows.shape[0]):
    known = adapt(**empty_support(adapt, member_id=index))[tensor_layout.META_EMBEDDING].numpy()[0]
    np.testing.assert_allclose(known - unknown, rows[index] - rows[0], rtol=1e-5, atol=1e-5)
  # An id outside the vocabulary is the unknown member, not an error or another member's row.
  outside = adapt(**empty_support(adapt, member_id=rows.shape[0]))[tensor_layout.META_EMBEDDING]
  np.testing.assert_allclose(outside.numpy()[0], unknown, rtol=1e-6)
