"""Tests for serving.grpc_service over loopback with the raw tensorflow_serving stubs."""
import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import tensors
from tests.serving_fixtures import request_examples


@pytest.fixture(scope="module")
def stub(grpc_channel):
  return prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)


@pytest.fixture(scope="module")
def model_stub(grpc_channel):
  return model_service_pb2_grpc.ModelServiceStub(grpc_channel)


def _request(saved_models, name="limaml", signature="", **inputs):
  request = predict_pb2.PredictRequest(
      model_spec=model_pb2.ModelSpec(name=name, signature_name=signature))
  if not inputs:
    inputs = {"examples": np.array(request_examples(saved_models.feature_spec), dtype=object)}
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tensors.to_tensor_proto(value))
  return request


def _outputs(response):
  return {k: tensors.from_tensor_proto(v) for k, v in response.outputs.items()}


def test_predict(stub, saved_models):
  response = stub.Predict(_request(saved_models), timeout=30)
  assert response.model_spec.name == "limaml"
  assert response.model_spec.version.value == 1
  assert response.model_spec.signature_name == "serving_default"
  outputs = _outputs(response)
  assert outputs["personalised"].tolist() == [True, True, False]
  assert outputs["probabilities"].dtype == np.float32 and outputs["probabilities"].shape == (3,)


def test_cold_start_matches_the_global_trainer_export(stub, saved_models):
  """An unknown member gets the un-adapted Meta Block: what the Trainer export serves."""
  personalised = _outputs(stub.Predict(_request(saved_models), timeout=30))
  global_model = _outputs(stub.Predict(_request(saved_models, name="global"), timeout=30))
  np.testing.assert_allclose(personalised["logits"][2], global_model["logits"][2], rtol=1e-5)
  assert not np.allclose(personalised["logits"][:2], global_model["logits"][:2])


def test_output_filter_version_and_other_signature(stub, saved_models):
  request = _request(saved_models)
  request.output_filter.append("logits")
  request.model_spec.version.value = 1
  assert list(_outputs(stub.Predict(request, timeout=30))) == ["logits"]
  table = _outputs(stub.Predict(_request(
      saved_models, signature="member_embedding",
      member_id=np.array([b"7", b"8", b"9"], object)), timeout=30))
  examples = np.array(request_examples(saved_models.feature_spec), object)
  response = stub.Predict(_request(saved_models, signature="predict_with_embedding",
                                   examples=examples, meta_embedding=table["meta_embedding"]),
                          timeout=30)
  assert response.model_spec.signature_name == "predict_with_embedding"
  # The table's embeddings fed back externally give the in-graph lookup's scores.
  served = _outputs(stub.Predict(_request(saved_models), timeout=30))["logits"]
  np.testing.assert_allclose(_outputs(response)["logits"][:2], served[:2], rtol=1e-5)


def test_metadata(stub):
  request = get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="limaml"), metadata_field=["signature_def"])
  response = stub.GetModelMetadata(request, timeout=30)
  assert response.model_spec.version.value == 1
  signatures = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signatures)
  assert {"serving_default", "predict_with_embedding", "member_embedding"} <= set(
      signatures.signature_def)
  assert signatures.signature_def["serving_default"].inputs["examples"].dtype == 7  # DT_STRING


def test_status(model_stub):
  response = model_stub.GetModelStatus(get_model_status_pb2.GetModelStatusRequest(
      model_spec=model_pb2.ModelSpec(name="limaml")), timeout=30)
  (status,) = response.model_version_status
  assert status.version == 1
  assert status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
  assert status.status.error_code == 0


def _error(call, request):
  with pytest.raises(grpc.RpcError) as error:
    call(request, timeout=30)
  return error.value.code(), error.value.details()


def test_malformed_predict_requests(stub, saved_models):
  good = np.array(request_examples(saved_models.feature_spec), object)
  cases = [
      (_request(saved_models, examples=np.array([1.0], np.float32)),
       "INVALID_ARGUMENT", "input 'examples' must be DT_STRING, got DT_FLOAT"),
      (_request(saved_models, signature="predict_with_embedding", examples=good),
       "INVALID_ARGUMENT", "missing ['meta_embedding']"),
      (_request(saved_models, signature="nope"), "INVALID_ARGUMENT", "signature 'nope' not found"),
      (_request(saved_models, name="nope"), "NOT_FOUND", "model 'nope' not found"),
      (_request(saved_models, examples=np.array([], object)), "INVALID_ARGUMENT", "empty batch"),
      (_request(saved_models, examples=np.array([b"\x00garbage"], object)),
       "INVALID_ARGUMENT", "Could not parse example input"),
  ]
  wrong_version = _request(saved_models)
  wrong_version.model_spec.version.value = 99
  cases.append((wrong_version, "NOT_FOUND", "version 99 is not serving"))
  label = _request(saved_models)
  label.model_spec.version_label = "stable"
  cases.append((label, "INVALID_ARGUMENT", "version label 'stable'"))
  for request, code, message in cases:
    got_code, details = _error(stub.Predict, request)
    assert (got_code.name, message in details) == (code, True), details


def test_garbage_bytes_are_invalid_argument(grpc_channel):
  raw = grpc_channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
  with pytest.raises(grpc.RpcError) as error:
    raw(b"\xff\xff\xff garbage", timeout=30)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "not a valid tensorflow.serving.PredictRequest" in error.value.details()


def test_metadata_and_status_errors(stub, model_stub):
  code, details = _error(stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="limaml")))
  assert code == grpc.StatusCode.INVALID_ARGUMENT and "metadata_field is empty" in details
  code, details = _error(stub.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=model_pb2.ModelSpec(name="limaml"), metadata_field=["x"]))
  assert code == grpc.StatusCode.INVALID_ARGUMENT and "not supported" in details
  request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name="limaml"))
  request.model_spec.version.value = 42
  code, details = _error(model_stub.GetModelStatus, request)
  assert code == grpc.StatusCode.NOT_FOUND and "no version 42" in details


def test_unimplemented_methods(stub):
  code, details = _error(stub.Classify, classification_pb2.ClassificationRequest())
  assert code == grpc.StatusCode.UNIMPLEMENTED and "Classify" in details
