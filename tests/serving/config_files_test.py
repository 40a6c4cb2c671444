"""Tests of the shipped TF Serving configs and manifests: they parse and agree with the Pusher.

The text protos are parsed with the protos TF Serving parses them with; the
docker-compose file and the Kubernetes manifest are read as YAML and checked
for ports, flags and the model base path mount, which must hold what the
Pusher writes (`<serving_model_dir>/<int version>/saved_model.pb`).
"""

import os
import re

import pytest
import yaml

from serving import config_files
from limaml_keras import serving_requests as requests_lib
from tfx_pipeline.ops import push

REPO_ROOT = os.path.dirname(config_files.SERVING_DIR)
CONTAINER_BASE_PATH = "/models/limaml"


@pytest.fixture(scope="module")
def model_config():
  config = config_files.load_model_server_config()
  assert len(config.model_config_list.config) == 1
  return config.model_config_list.config[0]


def _flags(args):
  return dict(re.fullmatch(r"--([a-z_]+)=(.*)", a).groups() for a in args)


@pytest.fixture(scope="module")
def compose_service():
  with open(config_files.DOCKER_COMPOSE, encoding="utf-8") as f:
    return yaml.safe_load(f)["services"]["limaml-serving"]


@pytest.fixture(scope="module")
def kubernetes():
  with open(config_files.KUBERNETES_MANIFEST, encoding="utf-8") as f:
    return {d["kind"]: d for d in yaml.safe_load_all(f)}


def test_models_config_names_the_model_and_the_container_base_path(model_config):
  assert model_config.name == "limaml"
  assert model_config.base_path == CONTAINER_BASE_PATH
  assert model_config.model_platform == "tensorflow"
  assert model_config.model_version_policy.WhichOneof("policy_choice") == "latest"
  assert model_config.model_version_policy.latest.num_versions == 2


def test_batching_fits_the_largest_request():
  batching = config_files.load_batching_parameters()
  assert batching.max_batch_size.value > requests_lib.MAX_CANDIDATES
  sizes = list(batching.allowed_batch_sizes)
  assert sizes == sorted(sizes) and sizes[-1] == batching.max_batch_size.value
  assert 0 < batching.batch_timeout_micros.value <= 10_000
  assert batching.num_batch_threads.value >= 1 and batching.max_enqueued_batches.value >= 1


def test_monitoring_exposes_prometheus():
  monitoring = config_files.load_monitoring_config()
  assert monitoring.prometheus_config.enable
  assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_a_bad_text_proto_is_named(tmp_path):
  path = tmp_path / "models.config"
  path.write_text('model_config_list { config { nme: "x" } }')
  with pytest.raises(ValueError, match=r"models.config.*ModelServerConfig.*nme"):
    config_files.load_model_server_config(str(path))
  path.write_text("max_batch_size: 3")
  with pytest.raises(ValueError, match="BatchingParameters"):
    config_files.load_batching_parameters(str(path))


def _check_server_flags(flags, config_dir):
  assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
  assert flags["model_config_file"] == f"{config_dir}/models.config"
  assert flags["batching_parameters_file"] == f"{config_dir}/batching_parameters.txt"
  assert flags["monitoring_config_file"] == f"{config_dir}/monitoring.config"
  assert flags["enable_batching"] == "true"
  assert int(flags["file_system_poll_wait_seconds"]) > 0


def test_compose_runs_the_stock_image_with_the_configs(compose_service):
  assert compose_service["image"] == "tensorflow/serving:2.16.1"
  assert compose_service["entrypoint"] == ["/usr/bin/tensorflow_model_server"]
  _check_server_flags(_flags(compose_service["command"]), "/config")
  assert sorted(compose_service["ports"]) == ["8500:8500", "8501:8501"]
  mounts = {v["target"]: v["source"] for v in compose_service["volumes"]}
  for name in ("models.config", "batching_parameters.txt", "monitoring.config"):
    source = os.path.normpath(os.path.join(config_files.SERVING_DIR, mounts[f"/config/{name}"]))
    assert os.path.isfile(source), source


@pytest.mark.slow  # imports TFX: 129 s on 2 busy cores when no other test has
def test_compose_mounts_where_the_pipeline_pushes(compose_service):
  from tfx_pipeline import local_runner  # pylint: disable=g-import-not-at-top  (imports TFX)
  mounts = {v["target"]: v["source"] for v in compose_service["volumes"]}
  default = re.fullmatch(r"\$\{LIMAML_SERVING_MODEL_DIR:-(.+)\}", mounts[CONTAINER_BASE_PATH])
  host_path = os.path.normpath(os.path.join(config_files.SERVING_DIR, default.group(1)))
  # `limaml pipeline run` defaults to --output outputs/pipeline, from the repository root.
  pushed = local_runner.LocalPaths(os.path.join(REPO_ROOT, "outputs", "pipeline"))
  assert host_path == pushed.serving_model_dir


def test_kubernetes_deployment_and_service(kubernetes):
  container = kubernetes["Deployment"]["spec"]["template"]["spec"]["containers"][0]
  assert container["image"] == "tensorflow/serving:2.16.1"
  _check_server_flags(_flags(container["args"]), "/config")
  assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"grpc": 8500,
                                                                          "http": 8501}
  probe = container["readinessProbe"]["httpGet"]
  assert probe["path"].startswith("/v1/models/limaml") and probe["port"] == "http"
  assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
  mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
  assert mounts["models"] == CONTAINER_BASE_PATH and mounts["config"] == "/config"
  volumes = {v["name"]: v for v in kubernetes["Deployment"]["spec"]["template"]["spec"]["volumes"]}
  assert volumes["models"]["persistentVolumeClaim"]["claimName"]
  service_ports = {p["port"] for p in kubernetes["Service"]["spec"]["ports"]}
  assert service_ports == {8500, 8501}
  assert kubernetes["Service"]["spec"]["selector"] == \
      kubernetes["Deployment"]["spec"]["template"]["metadata"]["labels"]


def test_base_path_layout_is_what_the_pusher_writes(saved_models, tmp_path):
  """A pushed version is an integer directory with saved_model.pb, what TF Serving loads."""
  base_path = str(tmp_path / "serving_model")
  pushed = push.push_version(saved_models.personalised_v1, base_path)
  version = os.path.basename(pushed)
  assert version.isdigit()
  assert os.path.isfile(os.path.join(base_path, version, "saved_model.pb"))
  assert push.list_versions(base_path) == [int(version)]
