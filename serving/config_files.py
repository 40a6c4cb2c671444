"""The TF Serving configs shipped in `serving/`, read as the model server reads them.

* `models.config`: `tensorflow.serving.ModelServerConfig` (from
  tensorflow-serving-api, `tensorflow_serving.config.model_server_config_pb2`);
* `batching_parameters.txt`: `tensorflow.serving.BatchingParameters`;
* `monitoring.config`: `tensorflow.serving.MonitoringConfig`.

The tensorflow-serving-api wheel ships only the API and `config/` protos the
client needs, not `session_bundle_config.proto` (BatchingParameters) nor
`monitoring_config.proto`; this module declares those two messages with the
field names and numbers of TF Serving 2.16's protos (the fields configs use),
so the text files are checked against the schema the server parses them with.

Example:

```python
config = load_model_server_config()          # serving/models.config
config.model_config_list.config[0].base_path  # "/models/limaml"
```
"""

import os
from typing import Any

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

#: Directory of the shipped configs and manifests.
SERVING_DIR = os.path.dirname(os.path.abspath(__file__))
MODELS_CONFIG = os.path.join(SERVING_DIR, "models.config")
BATCHING_PARAMETERS = os.path.join(SERVING_DIR, "batching_parameters.txt")
MONITORING_CONFIG = os.path.join(SERVING_DIR, "monitoring.config")
DOCKER_COMPOSE = os.path.join(SERVING_DIR, "docker-compose.yml")
KUBERNETES_MANIFEST = os.path.join(SERVING_DIR, "kubernetes", "limaml-serving.yaml")

_F = descriptor_pb2.FieldDescriptorProto


def _field(name: str, number: int, kind: int, type_name: str = "",
           repeated: bool = False) -> descriptor_pb2.FieldDescriptorProto:
  label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
  field = _F(name=name, number=number, type=kind, label=label)
  if type_name:
    field.type_name = type_name
  return field


def _message_classes():
  """Builds BatchingParameters and MonitoringConfig in a private descriptor pool."""
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  int64 = ".google.protobuf.Int64Value"
  string = ".google.protobuf.StringValue"
  message = _F.TYPE_MESSAGE
  batching = descriptor_pb2.DescriptorProto(name="BatchingParameters", field=[
      _field("max_batch_size", 1, message, int64),
      _field("batch_timeout_micros", 2, message, int64),
      _field("max_enqueued_batches", 3, message, int64),
      _field("num_batch_threads", 4, message, int64),
      _field("thread_pool_name", 5, message, string),
      _field("allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True),
      _field("pad_variable_length_inputs", 7, _F.TYPE_BOOL),
  ])
  prometheus = descriptor_pb2.DescriptorProto(name="PrometheusConfig", field=[
      _field("enable", 1, _F.TYPE_BOOL), _field("path", 2, _F.TYPE_STRING)])
  monitoring = descriptor_pb2.DescriptorProto(name="MonitoringConfig", field=[
      _field("prometheus_config", 1, message, ".tensorflow.serving.PrometheusConfig")])
  pool.Add(descriptor_pb2.FileDescriptorProto(
      name="limaml/tensorflow_serving_configs.proto", package="tensorflow.serving",
      syntax="proto3", dependency=["google/protobuf/wrappers.proto"],
      message_type=[batching, prometheus, monitoring]))
  factory = message_factory.MessageFactory(pool)
  return tuple(factory.GetPrototype(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
               for name in ("BatchingParameters", "MonitoringConfig"))


BatchingParameters, MonitoringConfig = _message_classes()


def parse_text_proto(path: str, message: Any) -> Any:
  """Parses the text proto at `path` into `message`; errors name the file and line."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    return text_format.Parse(text, message)
  except text_format.ParseError as e:
    raise ValueError(f"{path}: not a valid {message.DESCRIPTOR.full_name}: {e}") from None


def load_model_server_config(path: str = MODELS_CONFIG
                             ) -> model_server_config_pb2.ModelServerConfig:
  """`models.config` as a `ModelServerConfig`."""
  return parse_text_proto(path, model_server_config_pb2.ModelServerConfig())


def load_batching_parameters(path: str = BATCHING_PARAMETERS):
  """`batching_parameters.txt` as a `BatchingParameters`."""
  return parse_text_proto(path, BatchingParameters())


def load_monitoring_config(path: str = MONITORING_CONFIG):
  """`monitoring.config` as a `MonitoringConfig`."""
  return parse_text_proto(path, MonitoringConfig())
