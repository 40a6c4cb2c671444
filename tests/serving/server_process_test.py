"""Tests for serving.server_process, and the dev server's memory under declared-shape bombs.

The server runs in a child process so that its peak RSS (VmHWM) is measured
apart from the test process.
"""
import threading

import grpc
import pytest
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from serving import server_process
from tests.serving_fixtures import add_version


def _bomb() -> predict_pb2.PredictRequest:
  """38 bytes on the wire, 2^26 declared strings: took the server from 0.9 to 9.8 GB."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "limaml"
  request.inputs["examples"].CopyFrom(tensor_pb2.TensorProto(
      dtype=types_pb2.DT_STRING, string_val=[b"x"], tensor_shape={"dim": [{"size": 1 << 26}]}))
  return request


@pytest.mark.slow
def test_declared_shape_bombs_leave_the_server_peak_rss_flat(saved_models, tmp_path):
  base = str(tmp_path / "limaml")
  add_version(saved_models.personalised_v1, base, 1)
  with server_process.ServerProcess({"limaml": base}) as server:
    before = server.proc_status()
    errors = []

    def attack():
      with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(3):
          try:
            stub.Predict(_bomb(), timeout=60)
            errors.append("accepted")
          except grpc.RpcError as e:
            errors.append((e.code(), e.details()))

    threads = [threading.Thread(target=attack) for _ in range(6)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    after = server.proc_status()
  assert after["VmHWM_mb"] - before["VmHWM_mb"] < 100, (before, after)
  assert len(errors) == 18
  for code, details in errors:
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "'examples'" in details and "67108864" in details and "carries 1 value" in details


def test_a_missing_base_path_is_refused_before_starting_a_process(tmp_path):
  with pytest.raises(ValueError, match="is not a directory"):
    server_process.ServerProcess({"limaml": str(tmp_path / "missing")})
