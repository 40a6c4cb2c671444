"""Tests that the pipeline compiles to a Kubeflow Pipelines V2 spec with every component."""

import json

import pytest

from limaml_keras import synthetic
from tfx_pipeline.pipeline import configs
from tfx_pipeline.pipeline import pipeline as pipeline_lib

pytest.importorskip("kfp.pipeline_spec", reason="needs kfp-pipeline-spec (the TFX kfp extra)")
from tfx_pipeline import kubeflow_v2_runner  # pylint: disable=g-import-not-at-top

BEAM_ARGS = ("--runner=DataflowRunner", "--project=my-project", "--region=europe-west4")
BEAM_COMPONENTS = ("CsvExampleGen", "StatisticsGen", "Transform", "TaskGen",
                   configs.ACTIVITY_SLICES_ID, configs.META_EMBEDDING_GEN_ID, configs.EVALUATOR_ID)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
  path = tmp_path_factory.mktemp("kfp") / "limaml.json"
  kubeflow_v2_runner.compile_pipeline(str(path), "gs://bucket/root", "gs://bucket/data",
                                      synthetic.SPEC, beam_pipeline_args=BEAM_ARGS)
  with open(path) as f:
    return json.load(f)


def test_every_component_is_a_task(spec):
  expected = {c.id for c in pipeline_lib.create_pipeline(
      "p", "/root", "/data", synthetic.SPEC, "/serving").components}
  assert set(spec["pipelineSpec"]["root"]["dag"]["tasks"]) == expected
  executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
  assert set(executors) == {f"{c}_executor" for c in expected}
  assert executors["TaskGen_executor"]["container"]["image"] == configs.PIPELINE_IMAGE


def test_beam_args_reach_every_beam_component(spec):
  executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
  for component in BEAM_COMPONENTS:
    args = executors[f"{component}_executor"]["container"]["args"]
    assert set(BEAM_ARGS) <= set(args), component


def test_transform_waits_for_the_anomalies_gate(spec):
  tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
  assert "AnomaliesGate" in tasks["Transform"]["dependentTasks"]


def test_evaluator_gates_the_atomic_pusher(spec):
  tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
  assert {configs.META_EMBEDDING_GEN_ID, configs.ACTIVITY_SLICES_ID} <= set(
      tasks[configs.EVALUATOR_ID]["dependentTasks"])
  assert configs.EVALUATOR_ID in tasks[configs.PUSHER_ID]["dependentTasks"]
  executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
  assert "tfx_pipeline.components.atomic_pusher.Executor" in json.dumps(executors["Pusher_executor"])
  assert "member_activity" in json.dumps(tasks[configs.EVALUATOR_ID])  # The eval config.


def test_settings_are_compiled_in(spec):
  text = json.dumps(spec)
  assert configs.RUN_FN in text and configs.PREPROCESSING_FN in text
  assert "member_segment" in text  # The feature spec, in Transform's custom_config.
  assert "gs://bucket/root/serving_model" in text


def test_meta_embedding_gen_gets_raw_examples_and_spec_for_warmup(spec):
  task = spec["pipelineSpec"]["root"]["dag"]["tasks"][configs.META_EMBEDDING_GEN_ID]
  raw = task["inputs"]["artifacts"]["raw_examples"]["taskOutputArtifact"]
  assert (raw["producerTask"], raw["outputArtifactKey"]) == ("CsvExampleGen", "examples")
  assert "member_segment" in json.dumps(task["inputs"]["parameters"]["feature_spec"])


def _string_in(value):
  """The first string inside a compiled parameter (its JSON-encoded constant)."""
  if isinstance(value, str):
    return value
  for item in (value.values() if isinstance(value, dict) else value):
    found = _string_in(item)
    if found is not None:
      return found
  return None


def test_vertex_worker_pool_runs_the_trainers(tmp_path):
  vertex = kubeflow_v2_runner.vertex_training_config(
      "my-project", "europe-west4", "gcr.io/p/limaml:1", replica_count=3,
      machine_type="n1-highmem-16", accelerator_type="NVIDIA_TESLA_T4", accelerator_count=2)
  path = tmp_path / "vertex.json"
  kubeflow_v2_runner.compile_pipeline(str(path), "gs://bucket/root", "gs://bucket/data",
                                      synthetic.SPEC, vertex_training=vertex)
  pipeline_spec = json.loads(path.read_text())["pipelineSpec"]
  executors = pipeline_spec["deploymentSpec"]["executors"]
  trainers = [name for name in pipeline_spec["root"]["dag"]["tasks"] if "Trainer" in name]
  assert len(trainers) == 2  # LiMAML and the baseline.
  for name in trainers:
    assert "google_cloud_ai_platform.trainer.executor.GenericExecutor" in json.dumps(
        executors[f"{name}_executor"])
    config = json.loads(_string_in(
        pipeline_spec["root"]["dag"]["tasks"][name]["inputs"]["parameters"]["custom_config"]))
    pools = config["ai_platform_training_args"]["worker_pool_specs"]
    assert [p["replica_count"] for p in pools] == [1, 2]
    assert pools[1]["machine_spec"] == {"machine_type": "n1-highmem-16",
                                        "accelerator_type": "NVIDIA_TESLA_T4",
                                        "accelerator_count": 2}
    assert config["distribution"] == "multi_worker" and config["epochs"] >= 1
  assert "GenericExecutor" not in json.dumps(executors["TaskGen_executor"])


def test_vertex_training_config_pools_and_errors():
  one = kubeflow_v2_runner.vertex_training_config("p", "r", "img")
  pools = one["ai_platform_training_args"]["worker_pool_specs"]
  assert [p["replica_count"] for p in pools] == [1]
  assert pools[0]["machine_spec"] == {"machine_type": kubeflow_v2_runner.DEFAULT_MACHINE_TYPE}
  assert one["distribution"] == "auto"
  with pytest.raises(ValueError, match="replica_count"):
    kubeflow_v2_runner.vertex_training_config("p", "r", "img", replica_count=0)
  with pytest.raises(ValueError, match="accelerator_type"):
    kubeflow_v2_runner.vertex_training_config("p", "r", "img", accelerator_count=1)
