"""AnomaliesGate: stops the pipeline when ExampleValidator found anomalies.

ExampleValidator records anomalies but lets the run continue; this
component, placed between it and Transform, fails the run with a readable
list of them instead. Anomaly types listed in `tolerated_anomaly_types` are
logged and let through.
"""

import os
from typing import List, Sequence, Tuple

from absl import logging
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

_ANOMALIES_FILE = "SchemaDiff.pb"


class DataAnomaliesError(ValueError):
  """The input data does not match the schema learnt on the training period."""


def read_anomalies(anomalies_uri: str, split: str) -> anomalies_pb2.Anomalies:
  """The `Anomalies` proto ExampleValidator wrote for `split`."""
  path = os.path.join(anomalies_uri, f"Split-{split}", _ANOMALIES_FILE)
  with tf.io.gfile.GFile(path, "rb") as f:
    return anomalies_pb2.Anomalies.FromString(f.read())


def _type_name(reason: anomalies_pb2.AnomalyInfo.Reason) -> str:
  return anomalies_pb2.AnomalyInfo.Type.Name(reason.type)


def describe_anomalies(anomalies: anomalies_pb2.Anomalies, split: str,
                       tolerated: Sequence[str] = ()) -> Tuple[List[str], List[str]]:
  """Readable lines, `(blocking, tolerated)`, one per anomalous feature.

  A feature is tolerated when every reason of its anomaly has a type in
  `tolerated`.
  """
  blocking, let_through = [], []
  infos = list(anomalies.anomaly_info.items())
  if anomalies.HasField("dataset_anomaly_info"):
    infos.append(("<dataset>", anomalies.dataset_anomaly_info))
  for feature, info in sorted(infos, key=lambda item: item[0]):
    reasons = "; ".join(f"{r.short_description}: {r.description}" for r in info.reason)
    line = f"split {split!r}, feature {feature!r}: {reasons or info.description}"
    types = {_type_name(r) for r in info.reason}
    (let_through if types and types <= set(tolerated) else blocking).append(line)
  return blocking, let_through


@tfx.dsl.components.component
def AnomaliesGate(  # pylint: disable=invalid-name
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    tolerated_anomaly_types: tfx.dsl.components.Parameter[str] = "",
) -> None:
  """Fails with `DataAnomaliesError` listing the anomalies of every split.

  Args:
    anomalies: ExampleValidator's output.
    tolerated_anomaly_types: comma-separated `AnomalyInfo.Type` names that
      do not fail the run (e.g. `ENUM_TYPE_UNEXPECTED_STRING_VALUES`).
  """
  tolerated = [t.strip() for t in tolerated_anomaly_types.split(",") if t.strip()]
  blocking = []
  for split in artifact_utils.decode_split_names(anomalies.split_names):
    split_blocking, split_tolerated = describe_anomalies(
        read_anomalies(anomalies.uri, split), split, tolerated)
    for line in split_tolerated:
      logging.info("Tolerated anomaly: %s", line)
    blocking += split_blocking
  if blocking:
    raise DataAnomaliesError(
        "ExampleValidator found data anomalies (the data does not match the schema SchemaGen "
        "inferred from the training period):\n  " + "\n  ".join(blocking))
