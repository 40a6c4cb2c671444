"""Tests for serving.rest_service over loopback with `requests` (TF Serving's REST API)."""
import base64
import http.client
import json
from urllib.parse import urlparse

import numpy as np
import pytest
import requests

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


def test_post_without_content_length(rest_url):
  url = urlparse(rest_url)
  connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
  connection.putrequest("POST", "/v1/models/limaml:predict")
  connection.endheaders()
  response = connection.getresponse()
  assert response.status == 400
  assert "Content-Length" in json.loads(response.read())["error"]
  connection.close()
