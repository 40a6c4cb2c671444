"""Tests for serving.metrics: counts, histograms and the Prometheus text format."""
import pytest
from prometheus_client import parser  # the reference parser: a format check, not our code

from serving import metrics


def test_exposition_parses_as_prometheus_text_and_counts_by_status():
  registry = metrics.Metrics(["limaml"], buckets_us=[100, 1000])
  registry.observe("limaml", "predict", "GRPC", "OK", 50e-6)
  registry.observe("limaml", "predict", "GRPC", "OK", 500e-6)
  registry.observe("limaml", "predict", "GRPC", "INVALID_ARGUMENT", 5.0)
  registry.observe("attacker-chosen\"name", "predict", "REST", "NOT_FOUND", 1e-3)
  families = {f.name: f for f in parser.text_string_to_metric_families(registry.exposition())}
  counts = {(s.labels["model_name"], s.labels["entrypoint"], s.labels["status"]): s.value
            for s in families[metrics.REQUEST_COUNT].samples}
  assert counts == {("limaml", "GRPC", "OK"): 2, ("limaml", "GRPC", "INVALID_ARGUMENT"): 1,
                    ("", "REST", "NOT_FOUND"): 1}
  buckets = {s.labels["le"]: s.value for s in families[metrics.REQUEST_LATENCY].samples
             if s.name.endswith("_bucket") and s.labels["entrypoint"] == "GRPC"}
  assert buckets == {"100": 1, "1000": 2, "+Inf": 3}


def test_timed_records_an_escaped_exception_as_internal():
  registry = metrics.Metrics(["m"])
  with pytest.raises(RuntimeError):
    with registry.timed("m", "predict", "REST"):
      raise RuntimeError("boom")
  with registry.timed("m", "GetModelStatus", "REST") as outcome:
    outcome.status = "OK"
  text = registry.exposition()
  assert 'status="INTERNAL"} 1' in text and 'API="GetModelStatus",entrypoint="REST",status="OK"} 1' in text


def test_buckets_must_increase():
  with pytest.raises(ValueError, match="increasing"):
    metrics.Metrics(buckets_us=[10, 5])


def test_the_path_is_the_one_monitoring_config_promises():
  from serving import config_files  # pylint: disable=g-import-not-at-top
  assert config_files.load_monitoring_config().prometheus_config.path == metrics.METRICS_PATH
