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
  dims = {k: v.shape[-1] for k, v in adapt.structured_input_signature[1].items()}
  support = 3
  inputs = {tensor_layout.MEMBER_FEATURES: tf.constant([[-1.2247449]], tf.float32)}
  for name, spec in adapt.structured_input_signature[1].items():
    if name != tensor_layout.MEMBER_FEATURES:
      shape = [1, support] + ([dims[name]] if spec.shape.rank == 3 else [])
      inputs[name] = tf.zeros(shape, spec.dtype)
  cold = adapt(**inputs)[tensor_layout.META_EMBEDDING]
  with_cold = signatures[serving_contract.PREDICT_WITH_EMBEDDING_SIGNATURE](
      examples=tf.constant([request]), meta_embedding=cold)
  np.testing.assert_allclose(with_cold[serving_contract.LOGITS].numpy(), served[serving_contract.LOGITS].numpy(),
                             rtol=1e-5, atol=1e-6)
