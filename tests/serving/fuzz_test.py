"""Fuzzes the dev server's request handling (gRPC and REST) with hypothesis.

Thousands of random and malformed requests against one running server: every
answer must be well formed (a response, or a status/HTTP error with a
readable message), none may be an internal error, and the server must still
answer a good request afterwards.
"""
import json

import grpc
import hypothesis
import numpy as np
import pytest
import requests
from hypothesis import strategies as st
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import tensors
from tests.serving_fixtures import request_examples

_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(hypothesis.HealthCheck))
_CLIENT_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
_NAMES = st.sampled_from(["limaml", "global", "nope", ""])
_SIGNATURES = st.sampled_from(["", "serving_default", "predict_with_embedding",
                               "member_embedding", "adapt", "nope"])
_INPUTS = st.sampled_from(["examples", "meta_embedding", "member_id", "x"])
_DTYPES = st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 19, 20, 21, 23, 99])
_LEAF = st.one_of(st.binary(max_size=30), st.floats(), st.integers(-2 ** 70, 2 ** 70),
                  st.booleans(), st.text(max_size=10))


@st.composite
def _tensor(draw):
  proto = tensor_pb2.TensorProto(dtype=draw(_DTYPES))
  if draw(st.booleans()):
    proto.tensor_shape.unknown_rank = draw(st.booleans())
  for size in draw(st.lists(st.integers(-2, 6), max_size=3)):
    proto.tensor_shape.dim.append(tensor_shape_pb2.TensorShapeProto.Dim(size=size))
  kind = draw(st.sampled_from(["content", "string", "float", "int64", "bool", "real"]))
  if kind == "content":
    proto.tensor_content = draw(st.binary(max_size=64))
  elif kind == "string":
    proto.string_val.extend(draw(st.lists(st.binary(max_size=40), max_size=5)))
  elif kind == "float":
    proto.float_val.extend(draw(st.lists(st.floats(width=32), max_size=8)))
  elif kind == "int64":
    proto.int64_val.extend(draw(st.lists(st.integers(-2 ** 63, 2 ** 63 - 1), max_size=8)))
  elif kind == "bool":
    proto.bool_val.extend(draw(st.lists(st.booleans(), max_size=8)))
  else:  # a real request tensor, possibly under the wrong name
    proto.CopyFrom(tensors.to_tensor_proto(np.array(draw(st.lists(st.binary(max_size=40),
                                                                  max_size=3)), object)))
  return proto


@st.composite
def _predict_request(draw):
  request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(
      name=draw(_NAMES), signature_name=draw(_SIGNATURES)))
  choice = draw(st.integers(0, 3))
  if choice == 1:
    request.model_spec.version.value = draw(st.integers(-1, 3))
  elif choice == 2:
    request.model_spec.version_label = draw(st.text(max_size=5))
  for name in draw(st.lists(_INPUTS, max_size=3, unique=True)):
    request.inputs[name].CopyFrom(draw(_tensor()))
  request.output_filter.extend(draw(st.lists(st.sampled_from(["logits", "nope"]), max_size=2)))
  return request


@pytest.mark.slow  # fuzzes a live gRPC server: measured 35-130 s on 2 busy cores
def test_fuzz_grpc_predict(grpc_channel, saved_models):
  stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
  raw = grpc_channel.unary_unary("/tensorflow.serving.PredictionService/Predict",
                                 response_deserializer=predict_pb2.PredictResponse.FromString)

  @hypothesis.settings(max_examples=1200, **_SETTINGS)
  @hypothesis.given(request=_predict_request(), garbage=st.one_of(st.none(), st.binary()))
  def check(request, garbage):
    try:
      response = raw(garbage, timeout=30) if garbage is not None else stub.Predict(
          request, timeout=30)
    except grpc.RpcError as e:
      assert e.code() in _CLIENT_ERRORS, (e.code(), e.details())
      assert e.details()
      return
    assert response.outputs and response.model_spec.version.value == 1

  check()
  good = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="limaml"))
  good.inputs["examples"].CopyFrom(tensors.to_tensor_proto(
      np.array(request_examples(saved_models.feature_spec), object)))
  assert stub.Predict(good, timeout=30).outputs["logits"].tensor_shape.dim[0].size == 3


_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.integers(-2 ** 70, 2 ** 70),
              st.text(max_size=8), st.builds(lambda b: {"b64": b}, st.text(max_size=12))),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(
                                   ["instances", "inputs", "signature_name", "examples",
                                    "meta_embedding", "b64", "x"]), children, max_size=3)),
    max_leaves=12)
_PATHS = st.sampled_from(["limaml:predict", "global:predict", "limaml/versions/1:predict",
                          "limaml/versions/2:predict", "nope:predict", "limaml:regress",
                          "limaml/labels/x:predict", "limaml/metadata", "limaml:", ":predict"])


@pytest.mark.slow  # fuzzes a live REST server: measured 35-130 s on 2 busy cores
def test_fuzz_rest(rest_url, saved_models):
  session = requests.Session()

  @hypothesis.settings(max_examples=1200, **_SETTINGS)
  @hypothesis.given(path=_PATHS, body=st.one_of(
      _JSON.map(lambda v: json.dumps(v).encode()),
      st.fixed_dictionaries({"signature_name": _SIGNATURES, "instances": _JSON}).map(
          lambda v: json.dumps(v).encode()),
      st.fixed_dictionaries({"inputs": _JSON}).map(lambda v: json.dumps(v).encode()),
      st.binary(max_size=50)))
  def check(path, body):
    reply = session.post(f"{rest_url}/{path}", data=body, timeout=30)
    assert reply.status_code in (200, 400, 404, 501), (reply.status_code, reply.text)
    answer = reply.json()
    if reply.status_code == 200:
      assert set(answer) <= {"predictions", "outputs"} and answer
    else:
      assert isinstance(answer["error"], str) and answer["error"]

  check()
  status = requests.get(f"{rest_url}/limaml", timeout=30)
  assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
