"""Clients of a TF Serving model server (the stock image or `serving.dev_server`), and ranking.

* `GrpcClient`: `tensorflow.serving.PredictionService` (`Predict`,
  `GetModelMetadata`) and `ModelService` (`GetModelStatus`) on port 8500.
* `RestClient`: the REST API on port 8501 (`POST /v1/models/<name>:predict`
  in the row `instances` or columnar `inputs` format, `GET /v1/models/<name>`,
  `GET /v1/models/<name>/metadata`).

Both return the same Python values: `predict` a dict of numpy arrays,
`model_metadata` `{"model_spec": {...}, "signature_def": {name: {"inputs": ...,
"outputs": ...}}}` and `model_status` a list of `{"version", "state",
"error_code", "error_message"}`. Every call has a deadline (`timeout_s`); a
server error, an unreachable server or a missed deadline raises `ServingError`
with the canonical status code name and the server's message.

`rank(client, feature_spec, member, items, k)` scores candidate items for one
member in one request and returns the top k.

Example:

```python
with GrpcClient("localhost:8500") as client:
  member, known = catalog.member("m1")
  ranking = rank(client, catalog.feature_spec, member, catalog.items(["i1", "i2", "i3"]), k=2)
```
"""

import dataclasses
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import grpc
import numpy as np
import requests as http
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from limaml_keras import serving_requests as requests_lib
from limaml_keras import serving_contract
from serving import tensors

DEFAULT_MODEL_NAME = "limaml"
DEFAULT_GRPC_TARGET = "localhost:8500"
DEFAULT_REST_URL = "http://localhost:8501"
DEFAULT_TIMEOUT_S = 5.0
_SIGNATURE_DEF = "signature_def"
# TF Serving's REST API maps canonical codes to HTTP statuses; the reverse map.
_HTTP_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "NOT_FOUND", 409: "ABORTED", 412: "FAILED_PRECONDITION",
               413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
               500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
               504: "DEADLINE_EXCEEDED"}


class ServingError(Exception):
  """A failed call to the model server.

  Attributes:
    code: canonical status code name (`NOT_FOUND`, `UNAVAILABLE`,
      `DEADLINE_EXCEEDED`, `INVALID_ARGUMENT`, ...).
    message: the server's (or the transport's) message.
    http_status: the HTTP status of a REST call, else None.
  """

  def __init__(self, code: str, message: str, http_status: Optional[int] = None):
    super().__init__(f"{code}: {message}")
    self.code = code
    self.message = message
    self.http_status = http_status


def _check_timeout(timeout_s: float) -> float:
  if not timeout_s or timeout_s <= 0:
    raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
  return float(timeout_s)


def _status_list(statuses: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
  """`model_version_status` (proto-JSON form) as plain dicts."""
  return [{"version": int(s.get("version", 0)), "state": s.get("state", "UNKNOWN"),
           "error_code": s.get("status", {}).get("error_code", "OK"),
           "error_message": s.get("status", {}).get("error_message", "")}
          for s in statuses]


def _signature_defs(signature_def_map: Mapping[str, Any]) -> Dict[str, Dict[str, Any]]:
  """`SignatureDefMap.signature_def` (proto-JSON form) as `{name: {inputs, outputs}}`."""

  def tensors(infos):
    out = {}
    for key, info in infos.items():
      shape = info.get("tensor_shape", {})
      dims = None if shape.get("unknown_rank") else [int(d.get("size", -1))
                                                     for d in shape.get("dim", [])]
      out[key] = {"dtype": info.get("dtype", "DT_INVALID"), "shape": dims}
    return out

  return {name: {"inputs": tensors(sig.get("inputs", {})),
                 "outputs": tensors(sig.get("outputs", {})),
                 "method_name": sig.get("method_name", "")}
          for name, sig in signature_def_map.items()}


class GrpcClient:
  """gRPC client of one model (module docstring).

  Args:
    target: `host:port` of the gRPC API.
    model_name: the model's name in the server's config.
    timeout_s: deadline of every call, seconds.
    version: a specific version to address (default: the server's latest).
    version_label: a version label such as `stable` (exclusive with `version`).
  """

  def __init__(self, target: str = DEFAULT_GRPC_TARGET, model_name: str = DEFAULT_MODEL_NAME,
               timeout_s: float = DEFAULT_TIMEOUT_S, version: Optional[int] = None,
               version_label: Optional[str] = None):
    if not target or ":" not in target:
      raise ValueError(f"gRPC target must be host:port, got {target!r}")
    if version is not None and version_label is not None:
      raise ValueError("address a version or a version label, not both")
    self.target = target
    self.model_name = model_name
    self.timeout_s = _check_timeout(timeout_s)
    self.version = version
    self.version_label = version_label
    self._channel = grpc.insecure_channel(target)
    self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def __enter__(self) -> "GrpcClient":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    self._channel.close()

  def _call(self, method, request):
    try:
      return method(request, timeout=self.timeout_s)
    except grpc.RpcError as e:
      code = e.code().name if e.code() is not None else "UNKNOWN"
      message = e.details() or str(e)
      if code == "UNAVAILABLE":
        message = f"cannot reach the gRPC server at {self.target}: {message}"
      elif code == "DEADLINE_EXCEEDED":
        message = f"no answer from {self.target} within {self.timeout_s:g} s"
      raise ServingError(code, message) from None

  def _model_spec(self, spec) -> None:
    spec.name = self.model_name
    if self.version is not None:
      spec.version.value = int(self.version)
    if self.version_label is not None:
      spec.version_label = self.version_label

  def predict(self, examples: Sequence[bytes],
              signature_name: str = serving_contract.SERVING_SIGNATURE) -> Dict[str, np.ndarray]:
    """Runs `signature_name` on serialized `tf.Example`s; returns its outputs as numpy arrays."""
    request = requests_lib.predict_request(examples, self.model_name, signature_name,
                                           self.version, self.version_label)
    response = self._call(self._predictions.Predict, request)
    try:
      return {key: tensors.from_tensor_proto(tensor, key)
              for key, tensor in response.outputs.items()}
    except tensors.TensorError as e:
      raise ServingError("INTERNAL", f"unreadable answer: {e}") from None

  def model_metadata(self) -> Dict[str, Any]:
    """The model's spec and signature definitions (`GetModelMetadata`)."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=[_SIGNATURE_DEF])
    self._model_spec(request.model_spec)
    response = self._call(self._predictions.GetModelMetadata, request)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    if not response.metadata[_SIGNATURE_DEF].Unpack(signature_map):
      raise ServingError("INTERNAL", "GetModelMetadata answered no SignatureDefMap")
    as_json = json_format.MessageToDict(signature_map, preserving_proto_field_name=True)
    return {"model_spec": json_format.MessageToDict(response.model_spec,
                                                    preserving_proto_field_name=True),
            "signature_def": _signature_defs(as_json.get(_SIGNATURE_DEF, {}))}

  def model_status(self) -> List[Dict[str, Any]]:
    """The state of each version of the model (`GetModelStatus`)."""
    request = get_model_status_pb2.GetModelStatusRequest()
    self._model_spec(request.model_spec)
    response = self._call(self._models.GetModelStatus, request)
    as_json = json_format.MessageToDict(response, preserving_proto_field_name=True)
    return _status_list(as_json.get("model_version_status", []))


def _json_outputs(value: Any, columnar: bool) -> Dict[str, np.ndarray]:
  """Named numpy outputs of a REST answer's `outputs` (columnar) or `predictions` (rows)."""
  probe = value if columnar else (value[0] if isinstance(value, list) and value else None)
  if isinstance(probe, dict) and not tensors.is_b64(probe):
    specs = dict.fromkeys(probe)
  else:  # A single output: bare values.
    specs = {"outputs" if columnar else "predictions": None}
  try:
    if columnar:
      return tensors.columns_from_json(value, specs)
    return tensors.rows_from_json(value, specs)
  except tensors.TensorError as e:
    raise ServingError("INTERNAL", f"unreadable answer: {e}") from None


class RestClient:
  """REST client of one model (module docstring).

  Args:
    base_url: `http://host:port` of the REST API.
    model_name: the model's name in the server's config.
    timeout_s: timeout of every call, seconds (connect and each read).
    version: a specific version to address (default: the server's latest).
    version_label: a version label such as `stable` (exclusive with `version`).
  """

  def __init__(self, base_url: str = DEFAULT_REST_URL, model_name: str = DEFAULT_MODEL_NAME,
               timeout_s: float = DEFAULT_TIMEOUT_S, version: Optional[int] = None,
               version_label: Optional[str] = None):
    if not base_url.startswith(("http://", "https://")):
      raise ValueError(f"REST base URL must start with http:// or https://, got {base_url!r}")
    if version is not None and version_label is not None:
      raise ValueError("address a version or a version label, not both")
    self.base_url = base_url.rstrip("/")
    self.model_name = model_name
    self.timeout_s = _check_timeout(timeout_s)
    self.version = version
    self.version_label = version_label
    self._session = http.Session()

  def __enter__(self) -> "RestClient":
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def close(self) -> None:
    self._session.close()

  def _model_url(self) -> str:
    url = f"{self.base_url}/v1/models/{self.model_name}"
    if self.version is not None:
      url += f"/versions/{int(self.version)}"
    elif self.version_label is not None:
      url += f"/labels/{self.version_label}"
    return url

  def _request(self, method: str, url: str, body: Optional[dict] = None) -> Dict[str, Any]:
    try:
      response = self._session.request(method, url, json=body, timeout=self.timeout_s)
    except http.Timeout:
      raise ServingError("DEADLINE_EXCEEDED",
                         f"no answer from {url} within {self.timeout_s:g} s") from None
    except http.ConnectionError as e:
      raise ServingError("UNAVAILABLE", f"cannot reach the REST server at {self.base_url}: "
                         f"{type(e).__name__}") from None
    try:
      payload = response.json()
    except ValueError:
      payload = None
    if response.status_code != 200:
      message = payload.get("error") if isinstance(payload, dict) else None
      raise ServingError(_HTTP_CODES.get(response.status_code, "UNKNOWN"),
                         message or response.text.strip() or response.reason,
                         http_status=response.status_code)
    if not isinstance(payload, dict):
      raise ServingError("INTERNAL", f"{url} answered no JSON object", response.status_code)
    return payload

  def predict(self, examples: Sequence[bytes],
              signature_name: str = serving_contract.SERVING_SIGNATURE,
              columnar: bool = False) -> Dict[str, np.ndarray]:
    """Runs `signature_name` on serialized `tf.Example`s; returns its outputs as numpy arrays.

    Args:
      examples: serialized `tf.Example`s.
      signature_name: the signature to run.
      columnar: send `inputs` (columnar) instead of `instances` (rows).
    """
    body = requests_lib.rest_body(examples, signature_name, columnar)
    payload = self._request("POST", f"{self._model_url()}:predict", body)
    key = "outputs" if columnar else "predictions"
    if key not in payload:
      raise ServingError("INTERNAL", f"answer without {key!r}: {sorted(payload)}")
    return _json_outputs(payload[key], columnar)

  def model_metadata(self) -> Dict[str, Any]:
    """The model's spec and signature definitions (`GET .../metadata`)."""
    payload = self._request("GET", f"{self._model_url()}/metadata")
    signature_map = payload.get("metadata", {}).get(_SIGNATURE_DEF, {})
    return {"model_spec": payload.get("model_spec", {}),
            "signature_def": _signature_defs(signature_map.get(_SIGNATURE_DEF, {}))}

  def model_status(self) -> List[Dict[str, Any]]:
    """The state of each version of the model (`GET /v1/models/<name>`)."""
    payload = self._request("GET", self._model_url())
    return _status_list(payload.get("model_version_status", []))


Client = Union[GrpcClient, RestClient]


@dataclasses.dataclass(frozen=True)
class Ranking:
  """The top candidates for one member.

  Attributes:
    member_id: who.
    items: `(item_id, probability)`, best first.
    personalised: whether the model found the member in its member table
      (their adapted meta embedding); False = cold-start path; None when the
      model has no `personalised` output (a model without member table).
  """
  member_id: str
  items: Tuple[Tuple[str, float], ...]
  personalised: Optional[bool]


def rank(client: Client, feature_spec: Mapping[str, tf.io.FixedLenFeature],
         member: Mapping[str, Any], items: Sequence[Mapping[str, Any]], k: int,
         signature_name: str = serving_contract.SERVING_SIGNATURE) -> Ranking:
  """Scores `items` for `member` in one request and returns the top `k`.

  Args:
    client: a `GrpcClient` or `RestClient`.
    feature_spec: the model's raw serving feature spec (`Catalog.feature_spec`).
    member: raw member-side columns (with `member_id`).
    items: raw columns of each candidate (with `item_id`), unique items.
    k: how many to return (fewer when there are fewer candidates).
    signature_name: the signature to run.

  Returns:
    The ranking.

  Raises:
    ValueError: on a bad `k`, repeated items or rows the spec cannot encode.
    ServingError: when the server fails.
  """
  if not isinstance(k, int) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}")
  item_ids = [str(item.get("item_id")) for item in items]
  repeated = sorted({i for i in item_ids if item_ids.count(i) > 1})
  if repeated:
    raise ValueError(f"candidate items listed more than once: {repeated}")
  examples = requests_lib.serialized_examples(member, items, feature_spec)
  outputs = client.predict(examples, signature_name=signature_name)
  if serving_contract.PROBABILITIES not in outputs:
    raise ServingError("INTERNAL", f"the model answered no {serving_contract.PROBABILITIES!r}; outputs "
                       f"{sorted(outputs)}")
  probabilities = np.asarray(outputs[serving_contract.PROBABILITIES], dtype=np.float64).reshape([-1])
  if probabilities.shape[0] != len(items):
    raise ServingError("INTERNAL", f"{probabilities.shape[0]} probabilities for "
                       f"{len(items)} candidates")
  order = sorted(range(len(items)), key=lambda i: (-probabilities[i], item_ids[i]))[:k]
  personalised = None
  if serving_contract.PERSONALISED in outputs:
    personalised = bool(np.asarray(outputs[serving_contract.PERSONALISED]).reshape([-1]).all())
  return Ranking(str(member.get("member_id")),
                 tuple((item_ids[i], float(probabilities[i])) for i in order), personalised)


def format_ranking(ranking: Ranking, cold_start: Optional[bool] = None) -> str:
  """A small text table of a ranking; `cold_start`: the member is not in the data."""
  if ranking.personalised is None:
    how = "global model: no member table, cold-start embedding"
  elif ranking.personalised:
    how = "personalised: adapted meta embedding"
  else:
    how = "cold start: not in the model's member table"
  if cold_start:
    how += "; member not in the data"
  lines = [f"member {ranking.member_id} ({how})", f"  {'rank':>4}  {'item':<12} probability"]
  lines += [f"  {n:>4}  {item:<12} {p:.4f}" for n, (item, p) in enumerate(ranking.items, 1)]
  return "\n".join(lines)


def ranking_json(ranking: Ranking) -> str:
  """A ranking as one JSON object."""
  return json.dumps({"member_id": ranking.member_id, "personalised": ranking.personalised,
                     "items": [{"item_id": i, "probability": p} for i, p in ranking.items]})
