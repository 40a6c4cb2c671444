"""Tests for serving.dev_server: lifecycle, hot-swap under concurrent requests, corrupt versions."""
import base64
import json
import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import requests
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import dev_server
from limaml_keras import serving_contract
from serving import tensors
from tests.serving_fixtures import add_version
from tests.serving_fixtures import request_examples


def _predict_request(saved_models):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "limaml"
  request.inputs["examples"].CopyFrom(tensors.to_tensor_proto(
      np.array(request_examples(saved_models.feature_spec), object)))
  return request


def _wait_for(condition, timeout_s=60.0):
  deadline = time.monotonic() + timeout_s
  while not condition():
    assert time.monotonic() < deadline, "timed out"
    time.sleep(0.05)


@pytest.mark.slow
def test_hot_swap_under_concurrent_requests_drops_nothing(saved_models, tmp_path):
  base = str(tmp_path / "limaml")
  add_version(saved_models.personalised_v1, base, 1)
  with dev_server.DevServer(base, grpc_port=0, rest_port=0, poll_interval_s=0.1) as server:
    request = _predict_request(saved_models)
    rows = {"instances": [{"b64": base64.b64encode(e).decode()}
                          for e in request_examples(saved_models.feature_spec)]}
    # `answered`: every version answered so far, in real time (the waits below read it).
    seen, answered, failures, stop = [], [], [], threading.Event()

    def grpc_client():
      with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        versions = []
        while not stop.is_set():
          try:
            response = stub.Predict(request, timeout=30)
            versions.append(response.model_spec.version.value)
            answered.append(versions[-1])
          except grpc.RpcError as e:
            failures.append(e.details())
        seen.append(versions)

    def rest_client():
      with requests.Session() as session:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/limaml:predict"
        while not stop.is_set():
          reply = session.post(url, json=rows, timeout=30)
          if reply.status_code != 200 or len(reply.json()["predictions"]) != 3:
            failures.append(reply.text)

    threads = [threading.Thread(target=grpc_client) for _ in range(4)]
    threads += [threading.Thread(target=rest_client) for _ in range(2)]
    for thread in threads:
      thread.start()
    # Requests answered before and after the swap, however loaded the machine is.
    _wait_for(lambda: answered.count(1) >= 8)
    add_version(saved_models.personalised_v2, base, 2)
    _wait_for(lambda: server.models.get("limaml").serving_version == 2)
    _wait_for(lambda: answered.count(2) >= 8)
    stop.set()
    for thread in threads:
      thread.join()
  assert failures == []
  versions = [v for per_thread in seen for v in per_thread]
  assert set(versions) == {1, 2}
  for per_thread in seen:  # each client switches once, never back
    assert per_thread == sorted(per_thread)


@pytest.mark.slow
def test_corrupt_version_is_ignored_while_the_old_one_serves(saved_models, tmp_path):
  base = str(tmp_path / "limaml")
  add_version(saved_models.personalised_v1, base, 1)
  partial = os.path.join(base, "2")
  os.makedirs(os.path.join(partial, "variables"))
  with open(os.path.join(partial, "saved_model.pb"), "wb") as f:
    f.write(open(os.path.join(saved_models.personalised_v1, "saved_model.pb"), "rb").read())
  with dev_server.DevServer(base, grpc_port=0, rest_port=0, poll_interval_s=0.1) as server:
    assert server.models.get("limaml").serving_version == 1
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/limaml"
    # Version 2's files were just written: it is tried once they settle, and fails.
    _wait_for(lambda: len(requests.get(url, timeout=30).json()["model_version_status"]) == 2)
    status = requests.get(url, timeout=30).json()["model_version_status"]
    assert status[0]["version"] == "2" and status[0]["state"] == "END"
    assert status[0]["status"]["error_message"].startswith("load failed")
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      response = stub.Predict(_predict_request(saved_models), timeout=30)
      assert response.model_spec.version.value == 1


def test_serves_a_version_that_appears_after_start(saved_models, tmp_path):
  base = str(tmp_path / "limaml")
  os.makedirs(base)
  with dev_server.DevServer(base, grpc_port=0, rest_port=0, poll_interval_s=0.1) as server:
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/limaml"
    assert requests.get(url, timeout=30).status_code == 404
    add_version(saved_models.personalised_v1, base, 3)
    _wait_for(lambda: requests.get(url, timeout=30).status_code == 200)


def test_stop_unloads_and_wait_returns(saved_models, tmp_path):
  base = str(tmp_path / "limaml")
  add_version(saved_models.personalised_v1, base, 1)
  server = dev_server.DevServer(base, grpc_port=0, rest_port=0).start()
  with server.models.get("limaml").hold() as loaded:
    pass
  threading.Timer(0.2, server.stop).start()
  server.wait()
  assert loaded.closed
  with pytest.raises(requests.ConnectionError):
    requests.get(f"http://127.0.0.1:{server.rest_port}/v1/models/limaml", timeout=5)


def test_ctrl_c_before_wait_still_stops_the_server(saved_models, tmp_path):
  """SIGINT just after the ports are bound (before `wait`) must not leave gRPC running."""
  base = str(tmp_path / "limaml")
  add_version(saved_models.personalised_v1, base, 1)
  server = dev_server.DevServer(base, grpc_port=0, rest_port=0)
  held = []

  def interrupted():
    with server.models.get("limaml").hold() as loaded:
      held.append(loaded)
    raise KeyboardInterrupt

  server.serve_until_interrupted(on_serving=interrupted)
  assert held[0].closed
  with pytest.raises(requests.ConnectionError):
    requests.get(f"http://127.0.0.1:{server.rest_port}/v1/models/limaml", timeout=5)
  with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
    with pytest.raises(grpc.FutureTimeoutError):
      grpc.channel_ready_future(channel).result(timeout=2)


@pytest.mark.parametrize("kwargs,message", [
    ({"model_base_path": "/does/not/exist"}, "is not a directory"),
    ({"model_base_path": None}, "give a model_base_path"),
    ({"model_name": "a/b"}, "without '/'"),
    ({"poll_interval_s": 0}, "poll_interval_s"),
    ({"grpc_port": 70000}, "grpc_port"),
    ({"models": {"limaml": "."}}, "given twice"),
])
def test_constructor_rejects_bad_arguments(tmp_path, kwargs, message):
  kwargs = {"model_base_path": str(tmp_path), **kwargs}
  with pytest.raises(ValueError, match=message):
    dev_server.DevServer(**kwargs)


@pytest.mark.slow
def test_grpc_accepts_the_10000_rows_rest_accepts(server, grpc_channel, saved_models):
  rows = [{"member_id": "7", "item_id": "x" * 500, "age": 25.0, "year": 2000}] * 10_000
  examples = [serving_contract.raw_example(r, saved_models.feature_spec).SerializeToString() for r in rows]
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "limaml"
  request.inputs["examples"].CopyFrom(tensors.to_tensor_proto(np.array(examples, object)))
  assert request.ByteSize() > 4 << 20  # over gRPC's default message limit
  body = {"instances": [{"b64": base64.b64encode(e).decode()} for e in examples]}
  reply = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/limaml:predict",
                        json=body, timeout=120)
  assert reply.status_code == 200, reply.text[:300]
  stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
  response = stub.Predict(request, timeout=120)
  assert response.outputs["probabilities"].tensor_shape.dim[0].size == 10_000


def test_every_version_removed_unloads_the_model_as_tf_serving(saved_models, tmp_path):
  base = str(tmp_path / "limaml")
  add_version(saved_models.personalised_v1, base, 1)
  with dev_server.DevServer(base, grpc_port=0, rest_port=0, poll_interval_s=0.1) as server:
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/limaml"
    shutil.rmtree(os.path.join(base, "1"))
    _wait_for(lambda: server.models.get("limaml").serving_version is None)
    status = requests.get(url, timeout=30)
    assert status.status_code == 200
    assert [(s["version"], s["state"]) for s in status.json()["model_version_status"]] == [
        ("1", "END")]
    reply = requests.post(f"{url}:predict", json={"instances": ["x"]}, timeout=30)
    assert reply.status_code == 404
    assert "Servable not found for request: Latest(limaml)" in reply.json()["error"]
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      with pytest.raises(grpc.RpcError) as error:
        stub.Predict(_predict_request(saved_models), timeout=30)
      assert error.value.code() == grpc.StatusCode.NOT_FOUND
      assert "Servable not found" in error.value.details()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e38])
def test_non_finite_or_huge_embedding_is_invalid_argument(server, grpc_channel, saved_models,
                                                          bad):
  embedding = np.ones([3, saved_models.embedding_dim], np.float32)
  embedding[1, 2] = bad
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "limaml"
  request.model_spec.signature_name = "predict_with_embedding"
  request.inputs["examples"].CopyFrom(tensors.to_tensor_proto(
      np.array(request_examples(saved_models.feature_spec), object)))
  request.inputs["meta_embedding"].CopyFrom(tensors.to_tensor_proto(embedding))
  stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc_channel)
  with pytest.raises(grpc.RpcError) as error:
    stub.Predict(request, timeout=30)
  assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "meta_embedding" in error.value.details()
  rows = [{"examples": {"b64": base64.b64encode(e).decode()}, "meta_embedding": list(map(float, v))}
          for e, v in zip(request_examples(saved_models.feature_spec), embedding)]
  for model in ("limaml", "global"):  # the personalised export and the Trainer's
    reply = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/{model}:predict",
                          data=json.dumps({"signature_name": "predict_with_embedding",
                                           "instances": rows}),  # NaN/Infinity as TF Serving reads
                          timeout=30)
    assert reply.status_code == 400, reply.text
    assert "meta_embedding" in reply.json()["error"]
