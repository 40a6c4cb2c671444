"""TF Serving's RESTful API over `serving.versions.Models` (stdlib HTTP server).

* `GET /v1/models/<name>[/versions/<v>]`: version status, as TF Serving's
  `{"model_version_status": [{"version": "1", "state": "AVAILABLE", ...}]}`;
* `GET /v1/models/<name>[/versions/<v>]/metadata`: `{"model_spec": ...,
  "metadata": {"signature_def": {"signature_def": {...}}}}`;
* `POST /v1/models/<name>[/versions/<v>]:predict` with
  `{"signature_name": ..., "instances": [...]}` (row format, answered with
  `{"predictions": ...}`) or `{"inputs": ...}` (columnar, answered with
  `{"outputs": ...}`); binary strings as `{"b64": "..."}` (`serving.tensors`).

Errors are `{"error": "<readable message>"}` with HTTP 400 (bad request),
404 (unknown model, version or URL), 413 (body too large), 501 (classify,
regress) or 500; no request crashes the server.
"""

import http.server
import json
import logging
import re
from typing import Any, Dict, Optional, Tuple

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2

from serving import grpc_service
from serving import tensors
from serving import versions
from serving.versions import ServingError

log = logging.getLogger(__name__)

#: Largest request body accepted.
MAX_BODY_BYTES = 64 << 20
_URL = re.compile(r"^/v1/models/(?P<name>[^/:]+)"
                  r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
                  r"(?:(?P<metadata>/metadata)|:(?P<method>[A-Za-z]+))?$")
_HTTP_STATUS = {"INVALID_ARGUMENT": 400, "FAILED_PRECONDITION": 400, "OUT_OF_RANGE": 400,
                "NOT_FOUND": 404, "UNIMPLEMENTED": 501, "UNAVAILABLE": 503,
                "RESOURCE_EXHAUSTED": 413}


def _message_dict(message) -> Dict[str, Any]:
  return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                   including_default_value_fields=True)


def _model_spec(match: "re.Match") -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=match["name"])
  if match["version"] is not None:
    if len(match["version"]) > 18:
      raise ServingError("INVALID_ARGUMENT", f"version {match['version']} is too large")
    spec.version.value = int(match["version"])
  elif match["label"] is not None:
    spec.version_label = match["label"]
  return spec


def status(models: versions.Models, spec: model_pb2.ModelSpec) -> Dict[str, Any]:
  """The JSON of GET /v1/models/<name>[/versions/<v>]."""
  return _message_dict(grpc_service.model_status(
      models, get_model_status_pb2.GetModelStatusRequest(model_spec=spec)))


def metadata(models: versions.Models, spec: model_pb2.ModelSpec) -> Dict[str, Any]:
  """The JSON of GET /v1/models/<name>[/versions/<v>]/metadata."""
  response = grpc_service.model_metadata(models, get_model_metadata_pb2.GetModelMetadataRequest(
      model_spec=spec, metadata_field=[grpc_service.SIGNATURE_DEF_FIELD]))
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  response.metadata[grpc_service.SIGNATURE_DEF_FIELD].Unpack(signature_map)
  return {"model_spec": _message_dict(response.model_spec),
          "metadata": {grpc_service.SIGNATURE_DEF_FIELD: _message_dict(signature_map)}}


def predict(models: versions.Models, spec: model_pb2.ModelSpec, body: Any) -> Dict[str, Any]:
  """The JSON answer to a :predict body (row or columnar format); raises `ServingError`."""
  if not isinstance(body, dict):
    raise ServingError("INVALID_ARGUMENT", f"the request body must be a JSON object, got "
                       f"{type(body).__name__}")
  unknown = sorted(set(body) - {"signature_name", "instances", "inputs"})
  if unknown:
    raise ServingError("INVALID_ARGUMENT", f"unknown request key(s) {unknown[:5]}; expected "
                       "'signature_name' and one of 'instances' or 'inputs'")
  if ("instances" in body) == ("inputs" in body):
    raise ServingError("INVALID_ARGUMENT", "the request must have exactly one of 'instances' "
                       "(row format) or 'inputs' (columnar format)")
  signature_name = body.get("signature_name") or versions.DEFAULT_SIGNATURE
  if not isinstance(signature_name, str):
    raise ServingError("INVALID_ARGUMENT", "'signature_name' must be a string")
  model = models.get(spec.name)
  with model.hold(grpc_service.requested_version(spec)) as loaded:
    signature = loaded.signature(signature_name)
    specs = {k: v.dtype for k, v in signature.inputs.items()}
    try:
      if "instances" in body:
        inputs = tensors.rows_from_json(body["instances"], specs)
      else:
        inputs = tensors.columns_from_json(body["inputs"], specs)
    except tensors.TensorError as e:
      raise ServingError("INVALID_ARGUMENT", str(e)) from e
    outputs = loaded.run(signature_name, inputs)
  try:
    if "instances" in body:
      return {"predictions": tensors.rows_to_json(outputs)}
    return {"outputs": tensors.columns_to_json(outputs)}
  except tensors.TensorError as e:
    raise ServingError("INTERNAL", f"cannot write the outputs as JSON: {e}") from e


class _Handler(http.server.BaseHTTPRequestHandler):
  """One HTTP connection; `self.server.models` is the `versions.Models`."""

  protocol_version = "HTTP/1.1"
  server_version = "LiMAMLDevServer"
  # Headers and body go out in separate writes; with Nagle's algorithm the body
  # waits for the client's delayed ACK (~40 ms a request on loopback).
  disable_nagle_algorithm = True

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    log.debug("%s - %s", self.address_string(), format % args)

  def _send(self, code: int, payload: Dict[str, Any]) -> None:
    data = json.dumps(payload).encode("utf-8")
    self.send_response(code)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    if self.close_connection:  # Tell the client, so it does not reuse the connection.
      self.send_header("Connection", "close")
    self.end_headers()
    self.wfile.write(data)

  def _error(self, code: int, message: str) -> None:
    self._send(code, {"error": message})

  def _route(self) -> Tuple[Optional["re.Match"], str]:
    path = self.path.split("?", 1)[0]
    return _URL.match(path), path

  def _serve(self, build) -> None:
    try:
      self._send(200, build())
    except ServingError as e:
      self._error(_HTTP_STATUS.get(e.code, 500), e.message)
    except Exception as e:  # pylint: disable=broad-except  (never crash on a request)
      log.exception("internal error answering %s", self.path)
      self._error(500, f"internal error: {type(e).__name__}: {e}")

  def do_GET(self):  # pylint: disable=invalid-name
    match, path = self._route()
    if match is None or match["method"] is not None:
      self._error(404, f"no such resource: GET {path}; use /v1/models/<name>[/metadata]")
      return
    models = self.server.models
    if match["metadata"]:
      self._serve(lambda: metadata(models, _model_spec(match)))
    else:
      self._serve(lambda: status(models, _model_spec(match)))

  def _read_body(self) -> Any:
    length = self.headers.get("Content-Length")
    if length is None or not length.isdigit():
      raise ServingError("INVALID_ARGUMENT", "a POST needs a Content-Length header")
    if int(length) > MAX_BODY_BYTES:
      raise ServingError("RESOURCE_EXHAUSTED", f"the body has {length} bytes, more than the "
                         f"limit {MAX_BODY_BYTES}")
    data = self.rfile.read(int(length))
    try:
      return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
      raise ServingError("INVALID_ARGUMENT", f"the body is not valid JSON: {e}") from e

  def do_POST(self):  # pylint: disable=invalid-name
    match, path = self._route()
    try:
      body = self._read_body()
    except ServingError as e:
      self.close_connection = True  # the unread body would corrupt the next request
      self._error(_HTTP_STATUS.get(e.code, 500), e.message)
      return
    if match is None or match["metadata"] or match["method"] is None:
      self._error(404, f"no such resource: POST {path}; use /v1/models/<name>:predict")
    elif match["method"] != "predict":
      self._error(501 if match["method"] in ("classify", "regress") else 404,
                  f"method {match['method']!r} is not supported; use :predict")
    else:
      self._serve(lambda: predict(self.server.models, _model_spec(match), body))


class RestServer(http.server.ThreadingHTTPServer):
  """A threaded HTTP server answering TF Serving's REST API for `models`."""

  daemon_threads = True
  request_queue_size = 256

  def __init__(self, models: versions.Models, host: str, port: int):
    self.models = models
    super().__init__((host, port), _Handler)

  def handle_error(self, request, client_address) -> None:
    """Logs a connection that failed outside request handling (e.g. the client hung up)."""
    log.warning("REST connection from %s failed", client_address, exc_info=True)
