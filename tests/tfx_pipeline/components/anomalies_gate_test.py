"""Tests of the readable anomaly report behind AnomaliesGate."""

from tensorflow_metadata.proto.v0 import anomalies_pb2

from tfx_pipeline.components import anomalies_gate

_TYPE = anomalies_pb2.AnomalyInfo.Type


def _anomalies(**features):
  anomalies = anomalies_pb2.Anomalies()
  for name, reasons in features.items():
    info = anomalies.anomaly_info[name]
    for anomaly_type, short, description in reasons:
      info.reason.add(type=anomaly_type, short_description=short, description=description)
  return anomalies


def test_describe_blocking_and_tolerated():
  anomalies = _anomalies(
      label=[(_TYPE.UNEXPECTED_DATA_TYPE, "Unexpected data type",
              "Expected data of type: INT but got BYTES")],
      item_id=[(_TYPE.ENUM_TYPE_UNEXPECTED_STRING_VALUES, "Unexpected string values",
                "Examples contain values missing from the schema: i9 (~1%).")])
  blocking, tolerated = anomalies_gate.describe_anomalies(
      anomalies, "eval", ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"])
  assert blocking == ["split 'eval', feature 'label': Unexpected data type: Expected data of "
                      "type: INT but got BYTES"]
  assert tolerated == ["split 'eval', feature 'item_id': Unexpected string values: Examples "
                       "contain values missing from the schema: i9 (~1%)."]


def test_a_feature_is_tolerated_only_if_every_reason_is():
  anomalies = _anomalies(genre=[
      (_TYPE.ENUM_TYPE_UNEXPECTED_STRING_VALUES, "Unexpected string values", "x"),
      (_TYPE.FEATURE_TYPE_LOW_FRACTION_PRESENT, "Column dropped", "y")])
  blocking, tolerated = anomalies_gate.describe_anomalies(
      anomalies, "train", ["ENUM_TYPE_UNEXPECTED_STRING_VALUES"])
  assert len(blocking) == 1 and not tolerated
  assert "Unexpected string values: x; Column dropped: y" in blocking[0]


def test_no_anomalies():
  assert anomalies_gate.describe_anomalies(anomalies_pb2.Anomalies(), "eval") == ([], [])
