"""TF Serving's RESTful API over `serving.versions.Models` (stdlib HTTP server).

* `GET /v1/models/<name>[/versions/<v>]`: version status, as TF Serving's
  `{"model_version_status": [{"version": "1", "state": "AVAILABLE", ...}]}`;
* `GET /v1/models/<name>[/versions/<v>]/metadata`: `{"model_spec": ...,
  "metadata": {"signature_def": {"signature_def": {...}}}}`;
* `POST /v1/models/<name>[/versions/<v>]:predict` with
  `{"signature_name": ..., "instances": [...]}` (row format, answered with
  `{"predictions": ...}`) or `{"inputs": ...}` (columnar, answered with
  `{"outputs": ...}`); binary strings as `{"b64": "..."}` (`serving.tensors`).

* `GET /monitoring/prometheus/metrics`: request counts and latency
  histograms in the Prometheus text format (`serving.metrics`).

A POST body comes with a Content-Length or chunked (`Transfer-Encoding:
chunked`), at most `limits.max_request_bytes` either way. A client has
`limits.rest_api_timeout_s` for each read of its request line and headers and
for its whole body; then it gets 408 and is closed. At most
`limits.rest_api_num_threads` connections are served at once (one thread
each); more wait in the listen backlog, costing no thread.

Errors are `{"error": "<readable message>"}` with HTTP 400 (bad request),
404 (unknown model, version or URL), 408 (request not received in time), 411
(no Content-Length and not chunked), 413 (body too large), 501 (classify,
regress, other transfer encodings) or 500; no request crashes the server.
"""

import http.server
import json
import logging
import re
import socket
import threading
import time
from typing import Any, Dict, Optional, Tuple

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_pb2

from serving import grpc_service
from serving import limits
from serving import metrics as metrics_lib
from serving import tensors
from serving import versions
from serving.versions import ServingError

log = logging.getLogger(__name__)

_READ_SIZE = 1 << 16
_MAX_CHUNK_LINE = 1024
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


class _HttpError(Exception):
  """A transport-level error (before the body is parsed) answered with `status`."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


class _Handler(http.server.BaseHTTPRequestHandler):
  """One HTTP connection; `self.server` is the `RestServer`."""

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

  def setup(self) -> None:
    self.timeout = self.server.limits.rest_api_timeout_s  # each read of line and headers
    super().setup()

  def _serve(self, build, api: str, match: "re.Match") -> None:
    with self.server.metrics.timed(match["name"], api, "REST") as outcome:
      try:
        self._send(200, build())
        outcome.status = "OK"
      except ServingError as e:
        outcome.status = e.code
        self._error(_HTTP_STATUS.get(e.code, 500), e.message)
      except Exception as e:  # pylint: disable=broad-except  (never crash on a request)
        log.exception("internal error answering %s", self.path)
        self._error(500, f"internal error: {type(e).__name__}: {e}")

  def _send_metrics(self) -> None:
    data = self.server.metrics.exposition().encode("utf-8")
    self.send_response(200)
    self.send_header("Content-Type", metrics_lib.CONTENT_TYPE)
    self.send_header("Content-Length", str(len(data)))
    self.end_headers()
    self.wfile.write(data)

  def do_GET(self):  # pylint: disable=invalid-name
    match, path = self._route()
    if path == metrics_lib.METRICS_PATH:
      self._send_metrics()
      return
    if match is None or match["method"] is not None:
      self._error(404, f"no such resource: GET {path}; use /v1/models/<name>[/metadata]")
      return
    models = self.server.models
    if match["metadata"]:
      self._serve(lambda: metadata(models, _model_spec(match)), "GetModelMetadata", match)
    else:
      self._serve(lambda: status(models, _model_spec(match)), "GetModelStatus", match)

  def _read_some(self, size: int, deadline: float) -> bytes:
    """Up to `size` bytes (at least one), or `_HttpError` 408 at the deadline / 400 at EOF."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
      raise _HttpError(408, "the request body was not received within "
                       f"{self.server.limits.rest_api_timeout_s:g} s")
    self.connection.settimeout(remaining)
    try:
      data = self.rfile.read1(size)
    except (socket.timeout, TimeoutError) as e:
      raise _HttpError(408, "the request body was not received within "
                       f"{self.server.limits.rest_api_timeout_s:g} s") from e
    if not data:
      raise _HttpError(400, "the connection closed before the end of the body")
    return data

  def _read_exact(self, size: int, deadline: float) -> bytes:
    parts, got = [], 0
    while got < size:
      part = self._read_some(min(size - got, _READ_SIZE), deadline)
      parts.append(part)
      got += len(part)
    return b"".join(parts)

  def _read_line(self, deadline: float) -> bytes:
    line = bytearray()
    while not line.endswith(b"\n"):
      if len(line) > _MAX_CHUNK_LINE:
        raise _HttpError(400, "a chunk size line is too long")
      line += self._read_some(1, deadline)
    return bytes(line)

  def _read_chunked(self, deadline: float, limit: int) -> bytes:
    parts, total = [], 0
    while True:
      line = self._read_line(deadline).split(b";", 1)[0].strip()
      try:
        size = int(line, 16)
      except ValueError:
        raise _HttpError(400, f"bad chunk size {line[:20]!r} in a chunked body") from None
      if size == 0:
        break
      total += size
      if total > limit:
        raise _HttpError(413, f"the chunked body exceeds the limit of {limit} bytes")
      parts.append(self._read_exact(size, deadline))
      if self._read_line(deadline).strip():
        raise _HttpError(400, "a chunk is longer than its size line says")
    while self._read_line(deadline).strip():  # trailer fields, up to the empty line
      pass
    return b"".join(parts)

  def _read_body(self) -> Any:
    limit = self.server.limits.max_request_bytes
    deadline = time.monotonic() + self.server.limits.rest_api_timeout_s
    encoding = self.headers.get("Transfer-Encoding")
    length = self.headers.get("Content-Length")
    if encoding is not None:
      if encoding.strip().lower() != "chunked":
        raise _HttpError(501, f"Transfer-Encoding {encoding!r} is not supported; send "
                         "'chunked' or a Content-Length")
      data = self._read_chunked(deadline, limit)
    elif length is None:
      raise _HttpError(411, "a POST needs a Content-Length header or a chunked body")
    elif not length.isdigit():
      raise _HttpError(400, f"bad Content-Length {length[:20]!r}")
    elif int(length) > limit:
      raise _HttpError(413, f"the body has {length} bytes, more than the limit {limit}")
    else:
      data = self._read_exact(int(length), deadline)
    self.connection.settimeout(self.timeout)
    try:
      return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
      raise _HttpError(400, f"the body is not valid JSON: {e}") from e

  def do_POST(self):  # pylint: disable=invalid-name
    match, path = self._route()
    try:
      body = self._read_body()
    except _HttpError as e:
      self.close_connection = True  # the unread body would corrupt the next request
      try:
        self._error(e.status, e.message)
      except OSError:
        pass  # the client is gone
      return
    if match is None or match["metadata"] or match["method"] is None:
      self._error(404, f"no such resource: POST {path}; use /v1/models/<name>:predict")
    elif match["method"] != "predict":
      self._error(501 if match["method"] in ("classify", "regress") else 404,
                  f"method {match['method']!r} is not supported; use :predict")
    else:
      self._serve(lambda: predict(self.server.models, _model_spec(match), body), "predict",
                  match)


class RestServer(http.server.ThreadingHTTPServer):
  """A threaded HTTP server answering TF Serving's REST API for `models`.

  Args:
    models: the served models.
    host: interface to bind.
    port: port (0: any free one; see `server_address`).
    server_limits: body size, read timeout and connection cap.
    metrics: where requests are counted (default: a new `serving.metrics.Metrics`).
  """

  daemon_threads = True
  request_queue_size = 256

  def __init__(self, models: versions.Models, host: str, port: int,
               server_limits: limits.ServerLimits = limits.ServerLimits(),
               metrics: Optional[metrics_lib.Metrics] = None):
    self.models = models
    self.limits = server_limits
    self.metrics = metrics or metrics_lib.Metrics(models.names)
    self._slots = threading.BoundedSemaphore(server_limits.rest_api_num_threads)
    self._closing = threading.Event()
    super().__init__((host, port), _Handler)

  def process_request(self, request, client_address) -> None:
    """Starts a handler thread once one of the `rest_api_num_threads` slots is free."""
    while not self._slots.acquire(timeout=0.2):
      if self._closing.is_set():
        self.shutdown_request(request)
        return
    try:
      super().process_request(request, client_address)
    except BaseException:
      self._slots.release()
      raise

  def process_request_thread(self, request, client_address) -> None:
    try:
      super().process_request_thread(request, client_address)
    finally:
      self._slots.release()

  def shutdown(self) -> None:
    self._closing.set()
    super().shutdown()

  def handle_error(self, request, client_address) -> None:
    """Logs a connection that failed outside request handling (e.g. the client hung up)."""
    log.warning("REST connection from %s failed", client_address, exc_info=True)
