"""TF Serving's gRPC services over `serving.versions.Models`.

`PredictionServiceServicer` answers Predict and GetModelMetadata (Classify,
Regress and MultiInference: UNIMPLEMENTED); `ModelServiceServicer` answers
GetModelStatus (HandleReloadConfigRequest: UNIMPLEMENTED). Semantics as TF
Serving: `model_spec.name` must name a served model (NOT_FOUND), an optional
`version` must be the one serving (NOT_FOUND), `signature_name` defaults to
`serving_default`, `output_filter` selects outputs, and responses carry the
`model_spec` actually served. Bad requests get INVALID_ARGUMENT with a
readable message; no request crashes the server.

The `predict`, `model_metadata` and `model_status` functions build the
responses and raise `ServingError`; the REST service reuses them.
"""

import contextlib
import logging
from typing import Callable, Optional, TypeVar

import grpc
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2
from tensorflow_serving.apis import status_pb2

from serving import limits
from serving import metrics as metrics_lib
from serving import tensors
from serving import versions
from serving.versions import ServingError

log = logging.getLogger(__name__)
SIGNATURE_DEF_FIELD = "signature_def"
T = TypeVar("T")


def requested_version(spec: model_pb2.ModelSpec) -> Optional[int]:
  """The version a `ModelSpec` asks for (None: the serving one); labels are not configured."""
  if spec.WhichOneof("version_choice") == "version_label":
    raise ServingError("INVALID_ARGUMENT", f"unknown version label {spec.version_label!r}: "
                       "the dev server has no version labels; use a version number")
  if spec.HasField("version"):
    return spec.version.value
  return None


def _spec(name: str, version: int, signature_name: str = "") -> model_pb2.ModelSpec:
  spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
  spec.version.value = version
  return spec


def predict(models: versions.Models, request: predict_pb2.PredictRequest,
            max_request_bytes: int = limits.MAX_REQUEST_BYTES) -> predict_pb2.PredictResponse:
  """Answers a PredictRequest; raises `ServingError`.

  Declared shapes are checked against the payload and `max_request_bytes`
  (what the inputs would decode to) before any tensor is allocated.
  """
  model = models.get(request.model_spec.name)
  signature_name = request.model_spec.signature_name or versions.DEFAULT_SIGNATURE
  try:
    tensors.check_request_size(request.inputs, max_request_bytes)
    inputs = {k: tensors.from_tensor_proto(v, k) for k, v in request.inputs.items()}
  except tensors.TensorError as e:
    raise ServingError("INVALID_ARGUMENT", str(e)) from e
  with model.hold(requested_version(request.model_spec)) as loaded:
    outputs = loaded.run(signature_name, inputs, list(request.output_filter),
                         {k: v.dtype for k, v in request.inputs.items()})
    response = predict_pb2.PredictResponse(
        model_spec=_spec(model.name, loaded.version, signature_name))
  for name, value in outputs.items():
    response.outputs[name].CopyFrom(tensors.to_tensor_proto(value))
  return response


def model_metadata(models: versions.Models, request: get_model_metadata_pb2.GetModelMetadataRequest
                   ) -> get_model_metadata_pb2.GetModelMetadataResponse:
  """Answers a GetModelMetadataRequest (`metadata_field=["signature_def"]`); raises `ServingError`."""
  model = models.get(request.model_spec.name)
  fields = list(request.metadata_field)
  if not fields:
    raise ServingError("INVALID_ARGUMENT", "metadata_field is empty; ask for "
                       f"[{SIGNATURE_DEF_FIELD!r}]")
  unsupported = sorted(set(fields) - {SIGNATURE_DEF_FIELD})
  if unsupported:
    raise ServingError("INVALID_ARGUMENT", f"metadata field(s) {unsupported} not supported; "
                       f"only {SIGNATURE_DEF_FIELD!r}")
  with model.hold(requested_version(request.model_spec)) as loaded:
    response = get_model_metadata_pb2.GetModelMetadataResponse(
        model_spec=_spec(model.name, loaded.version))
    response.metadata[SIGNATURE_DEF_FIELD].Pack(
        get_model_metadata_pb2.SignatureDefMap(signature_def=loaded.signatures))
  return response


def model_status(models: versions.Models, request: get_model_status_pb2.GetModelStatusRequest
                 ) -> get_model_status_pb2.GetModelStatusResponse:
  """Answers a GetModelStatusRequest; raises `ServingError`."""
  model = models.get(request.model_spec.name)
  version = requested_version(request.model_spec)
  states = [s for s in model.states() if version is None or s[0] == version]
  if not states:
    raise ServingError("NOT_FOUND", f"model {model.name!r} has no version "
                       f"{'' if version is None else version} (base path {model.base_path})")
  response = get_model_status_pb2.GetModelStatusResponse()
  for number, state, message in states:
    status = status_pb2.StatusProto(error_code=2 if message else 0, error_message=message)
    response.model_version_status.add(
        version=number, state=get_model_status_pb2.ModelVersionStatus.State.Value(state),
        status=status)
  return response


class _Undecodable:
  """A request whose bytes do not parse as the method's message."""

  def __init__(self, message: str):
    self.message = message


def _tolerant(message_class):
  """A request deserializer that turns unparsable bytes into `_Undecodable` (INVALID_ARGUMENT)."""
  def parse(data: bytes):
    try:
      return message_class.FromString(data)
    except Exception as e:  # pylint: disable=broad-except  (protobuf DecodeError and kin)
      return _Undecodable(f"the request is not a valid {message_class.DESCRIPTOR.full_name}: {e}")
  return parse


def answer(context: grpc.ServicerContext, request, handler: Callable[[], T],
           metrics: Optional[metrics_lib.Metrics] = None, api: str = "") -> T:
  """Runs `handler`, turning `ServingError`s (and anything unexpected) into gRPC statuses.

  Args:
    context: the call's context.
    request: the parsed request (or `_Undecodable`).
    handler: builds the response.
    metrics: where the request is counted and timed (None: nowhere).
    api: the metrics' `API` label.
  """
  model_name = getattr(getattr(request, "model_spec", None), "name", "")
  timed = metrics.timed(model_name, api, "GRPC") if metrics else contextlib.nullcontext(
      metrics_lib.Outcome())
  with timed as outcome:
    try:
      if isinstance(request, _Undecodable):
        raise ServingError("INVALID_ARGUMENT", request.message)
      result = handler()
      outcome.status = "OK"
      return result
    except ServingError as e:
      outcome.status = e.code
      context.abort(getattr(grpc.StatusCode, e.code, grpc.StatusCode.INTERNAL), e.message)
    except Exception as e:  # pylint: disable=broad-except  (never crash on a request)
      log.exception("internal error answering a request")
      context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
  raise AssertionError("unreachable: context.abort raises")


def _unimplemented(method: str):
  def handler(self, request, context):  # pylint: disable=unused-argument
    context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by the dev "
                  "server; use Predict")
  return handler


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """tensorflow.serving.PredictionService over `models`.

  Args:
    models: the served models.
    max_request_bytes: what a request's inputs may decode to.
    metrics: where requests are counted (None: nowhere).
  """

  def __init__(self, models: versions.Models, max_request_bytes: int = limits.MAX_REQUEST_BYTES,
               metrics: Optional[metrics_lib.Metrics] = None):
    self._models = models
    self._max_request_bytes = max_request_bytes
    self._metrics = metrics

  def Predict(self, request, context):  # pylint: disable=invalid-name
    return answer(context, request,
                  lambda: predict(self._models, request, self._max_request_bytes),
                  self._metrics, "predict")

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return answer(context, request, lambda: model_metadata(self._models, request),
                  self._metrics, "GetModelMetadata")

  Classify = _unimplemented("Classify")
  Regress = _unimplemented("Regress")
  MultiInference = _unimplemented("MultiInference")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """tensorflow.serving.ModelService (status only) over `models`; `metrics` as above."""

  def __init__(self, models: versions.Models, metrics: Optional[metrics_lib.Metrics] = None):
    self._models = models
    self._metrics = metrics

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return answer(context, request, lambda: model_status(self._models, request),
                  self._metrics, "GetModelStatus")

  HandleReloadConfigRequest = _unimplemented("HandleReloadConfigRequest")


_METHODS = {
    "tensorflow.serving.PredictionService": {
        "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse),
        "GetModelMetadata": (get_model_metadata_pb2.GetModelMetadataRequest,
                             get_model_metadata_pb2.GetModelMetadataResponse),
        "Classify": (classification_pb2.ClassificationRequest,
                     classification_pb2.ClassificationResponse),
        "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
        "MultiInference": (inference_pb2.MultiInferenceRequest,
                           inference_pb2.MultiInferenceResponse)},
    "tensorflow.serving.ModelService": {
        "GetModelStatus": (get_model_status_pb2.GetModelStatusRequest,
                           get_model_status_pb2.GetModelStatusResponse),
        "HandleReloadConfigRequest": (model_management_pb2.ReloadConfigRequest,
                                      model_management_pb2.ReloadConfigResponse)},
}


def add_to_server(models: versions.Models, server: grpc.Server,
                  max_request_bytes: int = limits.MAX_REQUEST_BYTES,
                  metrics: Optional[metrics_lib.Metrics] = None) -> None:
  """Registers both services on a `grpc.Server` (arguments as `PredictionService`).

  The generated `add_*_to_server` helpers are not used so that undecodable
  request bytes get INVALID_ARGUMENT with a message instead of gRPC's bare
  INTERNAL "Exception deserializing request!".
  """
  servicers = {"tensorflow.serving.PredictionService":
                   PredictionService(models, max_request_bytes, metrics),
               "tensorflow.serving.ModelService": ModelService(models, metrics)}
  for service, methods in _METHODS.items():
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            getattr(servicers[service], method), request_deserializer=_tolerant(request),
            response_serializer=response.SerializeToString)
        for method, (request, response) in methods.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
