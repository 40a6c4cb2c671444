"""Tests of limaml_keras.serving_requests: the serialized examples, the gRPC PredictRequest and the REST body."""

import base64

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from limaml_keras import serving_requests as requests_lib
from tfx_pipeline import testing

# The tiny data's raw spec without label and timestamp: what a serving request carries.
FEATURE_SPEC = {k: v for k, v in testing.RAW_FEATURE_SPEC.items()
                if k not in ("label", "timestamp")}
MEMBER = {"member_id": "7", "age": "30.5"}
ITEMS = [{"item_id": "x", "year": "1990"}, {"item_id": "y", "year": 2010}]


def _parsed(examples):
  return tf.io.parse_example(examples, FEATURE_SPEC)


def test_one_example_per_candidate_with_member_and_item_columns():
  examples = requests_lib.serialized_examples(MEMBER, ITEMS, FEATURE_SPEC)
  parsed = _parsed(examples)
  assert parsed["member_id"].numpy().ravel().tolist() == [7, 7]
  assert parsed["item_id"].numpy().ravel().tolist() == [b"x", b"y"]
  assert parsed["year"].numpy().ravel().tolist() == [1990, 2010]
  np.testing.assert_allclose(parsed["age"].numpy().ravel(), [30.5, 30.5])


def test_predict_request_carries_a_string_vector():
  examples = requests_lib.serialized_examples(MEMBER, ITEMS, FEATURE_SPEC)
  request = requests_lib.predict_request(examples, "limaml", version=3)
  assert request.model_spec.name == "limaml"
  assert request.model_spec.signature_name == "serving_default"
  assert request.model_spec.version.value == 3
  tensor = request.inputs["examples"]
  assert tensor.dtype == types_pb2.DT_STRING
  assert [d.size for d in tensor.tensor_shape.dim] == [2]
  assert requests_lib.request_examples(request) == examples
  labelled = requests_lib.predict_request(examples, version_label="canary")
  assert labelled.model_spec.version_label == "canary"
  assert not labelled.model_spec.HasField("version")


@pytest.mark.parametrize("columnar", [False, True])
def test_rest_body_is_base64_rows_or_columns(columnar):
  examples = requests_lib.serialized_examples(MEMBER, ITEMS, FEATURE_SPEC)
  body = requests_lib.rest_body(examples, columnar=columnar)
  assert body["signature_name"] == "serving_default"
  values = body["inputs"]["examples"] if columnar else body["instances"]
  assert [base64.b64decode(v["b64"]) for v in values] == examples


@pytest.mark.parametrize("member, items, match", [
    (MEMBER, [], "at least one candidate"),
    (MEMBER, [ITEMS[0]] * (requests_lib.MAX_CANDIDATES + 1), "at most 1000"),
    (MEMBER, [{"item_id": "x"}], "item 'x'.*lacks column 'year'"),
    (MEMBER, [{"item_id": "x", "year": "soon"}], "item 'x'.*soon"),
    ({**MEMBER, "item_id": "z"}, ITEMS, r"disagree on columns \['item_id'\]"),
])
def test_bad_rows_are_named(member, items, match):
  with pytest.raises(ValueError, match=match):
    requests_lib.serialized_examples(member, items, FEATURE_SPEC)


def test_bad_requests_are_refused():
  with pytest.raises(ValueError, match="at least one example"):
    requests_lib.predict_request([])
  with pytest.raises(ValueError, match="bytes, got str"):
    requests_lib.rest_body(["not bytes"])
  with pytest.raises(ValueError, match="not both"):
    requests_lib.predict_request([b""], version=1, version_label="stable")
