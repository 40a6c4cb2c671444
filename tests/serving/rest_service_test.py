"""Tests for serving.rest_service over loopback with `requests` (TF Serving's REST API)."""
import base64
import contextlib
import http.client
import json
import socket
import threading
import time
from urllib.parse import urlparse

import numpy as np
import pytest
import requests
from prometheus_client import parser  # the reference parser: a format check, not our code

from serving import metrics
from serving import rest_service
from tests.serving_fixtures import request_examples


def _b64_rows(saved_models):
  return [{"b64": base64.b64encode(e).decode()} for e in request_examples(saved_models.feature_spec)]


def test_status_and_metadata(rest_url):
  status = requests.get(f"{rest_url}/limaml", timeout=30).json()
  assert status == {"model_version_status": [
      {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
  assert requests.get(f"{rest_url}/limaml/versions/1", timeout=30).status_code == 200
  metadata = requests.get(f"{rest_url}/limaml/metadata", timeout=30).json()
  assert metadata["model_spec"]["name"] == "limaml" and metadata["model_spec"]["version"] == "1"
  signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
  assert signature["inputs"]["examples"]["dtype"] == "DT_STRING"


def test_predict_row_format(rest_url, saved_models):
  reply = requests.post(f"{rest_url}/limaml:predict", timeout=30,
                        json={"instances": _b64_rows(saved_models)})
  assert reply.status_code == 200, reply.text
  predictions = reply.json()["predictions"]
  assert [p["personalised"] for p in predictions] == [True, True, False]
  assert all(0 < p["probabilities"] < 1 for p in predictions)


def test_predict_columnar_format_matches_row_format(rest_url, saved_models):
  rows = requests.post(f"{rest_url}/limaml/versions/1:predict", timeout=30,
                       json={"instances": _b64_rows(saved_models)}).json()["predictions"]
  columns = requests.post(
      f"{rest_url}/limaml:predict", timeout=30,
      json={"signature_name": "serving_default",
            "inputs": {"examples": _b64_rows(saved_models)}}).json()["outputs"]
  np.testing.assert_allclose(columns["logits"], [r["logits"] for r in rows])


def test_multi_input_signature_rows(rest_url, saved_models):
  embedding = np.ones(saved_models.embedding_dim).tolist()
  instances = [{"examples": row, "meta_embedding": embedding} for row in _b64_rows(saved_models)]
  reply = requests.post(f"{rest_url}/limaml:predict", timeout=30, json={
      "signature_name": "predict_with_embedding", "instances": instances})
  assert reply.status_code == 200, reply.text
  assert len(reply.json()["predictions"]) == 3


@pytest.mark.parametrize("path,body,status,message", [
    ("limaml:predict", {"instances": [1.5]}, 400, "'examples' must be DT_STRING"),
    ("limaml:predict", {"inputs": {"x": ["a"]}}, 400, "unknown tensor(s) ['x']"),
    ("limaml:predict", {"signature_name": "predict_with_embedding", "inputs": {"examples": ["a"]}},
     400, "missing ['meta_embedding']"),
    ("limaml:predict", {"signature_name": "nope", "instances": ["a"]}, 400, "signature 'nope'"),
    ("limaml:predict", {"instances": []}, 400, "empty"),
    ("limaml:predict", {"inputs": []}, 400, "empty batch"),
    ("limaml:predict", {"instances": ["garbage"]}, 400, "Could not parse example input"),
    ("limaml:predict", {"instances": ["a"], "inputs": ["a"]}, 400, "exactly one of"),
    ("limaml:predict", {"instances": [{"b64": "%%"}]}, 400, "invalid base64"),
    ("limaml:predict", [1], 400, "must be a JSON object"),
    ("nope:predict", {"instances": ["a"]}, 404, "model 'nope' not found"),
    ("limaml/versions/9:predict", {"instances": ["a"]}, 404, "version 9 is not serving"),
    ("limaml:classify", {"instances": ["a"]}, 501, "not supported"),
    ("limaml/metadata", {}, 404, "no such resource"),
])
def test_bad_predict_requests(rest_url, path, body, status, message):
  reply = requests.post(f"{rest_url}/{path}", json=body, timeout=30)
  assert reply.status_code == status, reply.text
  assert message in reply.json()["error"]


def test_bad_json_and_unknown_urls(rest_url):
  reply = requests.post(f"{rest_url}/limaml:predict", data=b"{not json", timeout=30)
  assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]
  reply = requests.post(f"{rest_url}/limaml:predict", data=b"\xff\xfe", timeout=30)
  assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]
  assert requests.get(f"{rest_url}/nope", timeout=30).status_code == 404
  assert requests.get(f"{rest_url}/limaml/versions/3", timeout=30).status_code == 404
  reply = requests.get(f"{rest_url}/limaml/labels/stable", timeout=30)
  assert reply.status_code == 400 and "version label" in reply.json()["error"]
  assert requests.get(rest_url.replace("/v1/models", "/other"), timeout=30).status_code == 404


def test_post_without_content_length_or_chunks_gets_411(rest_url):
  url = urlparse(rest_url)
  connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
  connection.putrequest("POST", "/v1/models/limaml:predict")
  connection.endheaders()
  response = connection.getresponse()
  assert response.status == 411
  assert "Content-Length" in json.loads(response.read())["error"]
  connection.close()


def _chunks(data: bytes, size: int):
  for start in range(0, len(data), size):
    yield data[start:start + size]


def test_chunked_post_is_accepted(rest_url, saved_models):
  body = json.dumps({"instances": _b64_rows(saved_models)}).encode()
  reply = requests.post(f"{rest_url}/limaml:predict", data=_chunks(body, 7), timeout=30)
  assert reply.request.headers.get("Transfer-Encoding") == "chunked"
  assert reply.status_code == 200, reply.text
  assert len(reply.json()["predictions"]) == 3


def test_chunked_post_over_the_size_limit_gets_413(saved_models, server):
  limits = rest_service.limits.ServerLimits(max_request_bytes=1000)
  with _rest_server(server.models, limits) as port:
    body = json.dumps({"instances": _b64_rows(saved_models) * 20}).encode()
    reply = requests.post(f"http://127.0.0.1:{port}/v1/models/limaml:predict",
                          data=_chunks(body, 100), timeout=30)
  assert reply.status_code == 413 and "1000" in reply.json()["error"]


def test_prometheus_metrics_count_requests_and_latency(rest_url, saved_models):
  requests.post(f"{rest_url}/limaml:predict", json={"instances": _b64_rows(saved_models)},
                timeout=30).raise_for_status()
  requests.post(f"{rest_url}/limaml:predict", json={"instances": [1.5]}, timeout=30)
  reply = requests.get(rest_url.replace("/v1/models", metrics.METRICS_PATH), timeout=30)
  assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/plain")
  families = {f.name: f for f in parser.text_string_to_metric_families(reply.text)}
  ok = [s for s in families[metrics.REQUEST_COUNT].samples
        if s.labels == {"model_name": "limaml", "API": "predict", "entrypoint": "REST",
                        "status": "OK"}]
  assert ok and ok[0].value >= 1
  assert any(s.labels.get("status") == "INVALID_ARGUMENT"
             for s in families[metrics.REQUEST_COUNT].samples)
  counts = [s for s in families[metrics.REQUEST_LATENCY].samples if s.name.endswith("_count")
            and s.labels == {"model_name": "limaml", "API": "predict", "entrypoint": "REST"}]
  assert counts and counts[0].value >= 2


@contextlib.contextmanager
def _rest_server(models, limits):
  rest = rest_service.RestServer(models, "127.0.0.1", 0, limits, metrics.Metrics(models.names))
  thread = threading.Thread(target=rest.serve_forever, daemon=True)
  thread.start()
  try:
    yield rest.server_address[1]
  finally:
    rest.shutdown()
    rest.server_close()
    thread.join(timeout=30)


def _stalled_upload(port: int) -> socket.socket:
  sock = socket.create_connection(("127.0.0.1", port), timeout=30)
  sock.sendall(b"POST /v1/models/limaml:predict HTTP/1.1\r\nHost: x\r\n"
               b"Content-Length: 100000\r\n\r\n{\"instances\": [")
  return sock


def _closed_by_server(sock: socket.socket) -> bool:
  """Reads what the server sent until it closes; True if it closed within the socket timeout."""
  try:
    while sock.recv(65536):
      pass
    return True
  except socket.timeout:
    return False


@pytest.mark.slow
def test_stalled_uploads_are_capped_and_closed_after_the_timeout(server, saved_models):
  limits = rest_service.limits.ServerLimits(rest_api_num_threads=4, rest_api_timeout_s=1.0)
  with _rest_server(server.models, limits) as port:
    baseline = threading.active_count()
    started = time.monotonic()
    sockets = [_stalled_upload(port) for _ in range(20)]
    peak = 0
    for _ in range(20):
      peak = max(peak, threading.active_count() - baseline)
      time.sleep(0.05)
    assert peak <= 4
    for sock in sockets:
      sock.settimeout(30)
      assert _closed_by_server(sock)
      sock.close()
    # 20 uploads, 4 at a time, each closed after 1 s: about 5 s, never "forever".
    assert time.monotonic() - started < 15
    reply = requests.post(f"http://127.0.0.1:{port}/v1/models/limaml:predict",
                          json={"instances": _b64_rows(saved_models)}, timeout=30)
    assert reply.status_code == 200, reply.text


@pytest.mark.slow
def test_slowloris_body_is_closed_at_the_deadline(server):
  limits = rest_service.limits.ServerLimits(rest_api_timeout_s=1.0)
  with _rest_server(server.models, limits) as port:
    sock = _stalled_upload(port)
    started = time.monotonic()
    sock.settimeout(0.3)
    closed = False
    while time.monotonic() - started < 10 and not closed:
      try:
        sock.sendall(b" ")  # one byte every 0.3 s: each read is in time, the whole body is not
        closed = sock.recv(65536) == b""
      except socket.timeout:
        continue
      except OSError:
        closed = True
    sock.close()
  assert closed and time.monotonic() - started < 5
