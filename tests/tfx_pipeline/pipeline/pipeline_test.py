"""End-to-end: the whole pipeline on a small synthetic CSV in a real LocalDagRunner.

One module-scoped run (through `limaml pipeline run`, Beam in-memory to keep
CI fast) feeds the checks of its components' outputs: TaskGen's records and
statistics, both Trainers' metrics, the Evaluator's activity slices and
verdict, and the pushed personalised SavedModel, loaded by the TF1 session
loader that TF Serving's C++ loader mirrors. The run's gate is permissive
(`--min-auc 0 --min-gauc-gain -1 --max-log-loss-increase 100`), so the model is blessed and pushed
whatever a one-epoch model scores. A second run checks the cache, a third
with an unreachable gate that a not-blessed model is not pushed; another
pipeline checks that ExampleValidator anomalies stop a run.
"""

import contextlib
import csv
import glob
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from limaml import cli
from limaml_keras import tensor_layout
from limaml_keras import synthetic
from limaml_keras import metrics
from limaml_keras import warmup
from tfx_pipeline.components import activity_slices
from tfx_pipeline.components import anomalies_gate
from tfx_pipeline.pipeline import configs
from tfx_pipeline.ops import evaluation_results
from limaml_keras import serving_contract
from tfx_pipeline.models import export
from tfx_pipeline import local_runner
from tfx_pipeline.models import personalized_model
from tfx_pipeline.pipeline import pipeline as pipeline_lib
from limaml_keras import model_config
from tfx_pipeline.ops import push
from limaml_keras import schema
from limaml_keras import task_settings
from tfx_pipeline.components import task_gen
from tfx_pipeline.components import task_records
from tfx_pipeline.models import trainer

pytestmark = pytest.mark.slow

IN_MEMORY = "--beam-arg=--direct_running_mode=in_memory"
COMPONENTS = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
              "AnomaliesGate", "Transform", "TaskGen", configs.TRAINER_ID,
              configs.BASELINE_TRAINER_ID, configs.META_EMBEDDING_GEN_ID,
              configs.ACTIVITY_SLICES_ID, configs.EVALUATOR_ID, configs.PUSHER_ID)
PERMISSIVE_GATE = ["--min-auc", "0", "--min-gauc-gain", "-1", "--max-log-loss-increase", "100"]


def _run_cli(argv):
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    code = cli.main(argv)
  assert code == 0, out.getvalue()
  return out.getvalue().splitlines()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("e2e")
  data = synthetic.generate(num_members=200, num_items=100, seed=0)
  csv_path = synthetic.write_csv(data, str(root / "input" / "interactions.csv"))
  schema.save_spec(data.spec, str(root / "input" / schema.SPEC_FILE_NAME))
  # The library defaults, whose task format the tests below check; a user's data without the
  # flag gets the settings tuned on real data (pipeline_command_test's ids-only run).
  argv = ["pipeline", "run", "--data", csv_path, "--output", str(root / "out"),
          "--epochs", "1", IN_MEMORY, "--settings-from", "defaults"] + PERMISSIVE_GATE
  lines = _run_cli(argv)
  return {"argv": argv, "lines": lines, "paths": local_runner.LocalPaths(str(root / "out"))}


def _outputs(run, node_id):
  return local_runner.latest_outputs(run["paths"], configs.PIPELINE_NAME, node_id)


def _csv_rows(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_every_component_ran_and_results_are_reported(run):
  for component in COMPONENTS:
    assert any(component + ": done" in line for line in run["lines"]), component
  report = "\n".join(run["lines"])
  assert "LiMAML: evaluation-period query AUC" in report
  assert "global baseline: evaluation-period query AUC" in report
  summary = _evaluation(run)
  assert evaluation_results.report_lines(summary)[0] in report
  assert "blessed: yes" in report
  [version] = push.list_versions(run["paths"].serving_model_dir)
  assert (f"serving model: pushed version {version} to "
          f"{push.version_path(run['paths'].serving_model_dir, version)}") in report


def _evaluation(run):
  return evaluation_results.read_evaluation(_outputs(run, configs.EVALUATOR_ID)["evaluation"].uri)


def test_evaluator_slices_by_training_period_activity(run):
  """TFMA's per-slice example counts match each member's training-period activity."""
  data_root = run["paths"].data_root
  train_counts = {}
  for row in _csv_rows(f"{data_root}/train/interactions.csv"):
    train_counts[row["member_id"]] = train_counts.get(row["member_id"], 0) + 1
  eval_rows = _csv_rows(f"{data_root}/eval/interactions.csv")
  buckets = metrics.segment_of([train_counts.get(r["member_id"], 0) for r in eval_rows])
  expected = {b: int((buckets == b).sum()) for b in metrics.SEGMENTS}
  summary = _evaluation(run)
  assert summary.overall.example_count == len(eval_rows)
  assert {s.name: s.example_count for s in summary.slices} == expected
  assert sum(n > 0 for n in expected.values()) >= 3  # Cold-start, light and heavy members.
  for result in [summary.overall] + [s for s in summary.slices if s.example_count]:
    for model in (result.candidate, result.baseline):
      assert 0.0 <= model.auc <= 1.0 and 0.0 <= model.gauc <= 1.0 and model.log_loss > 0
    low, high = result.gauc_gain_interval
    assert -1.0 <= low <= high <= 1.0
  sliced = _outputs(run, configs.ACTIVITY_SLICES_ID)["sliced_examples"]
  record = next(iter(tf.data.TFRecordDataset(
      glob.glob(os.path.join(sliced.uri, "Split-eval", "*")), compression_type="GZIP")))
  feature = tf.train.Example.FromString(record.numpy()).features.feature
  assert feature[activity_slices.ACTIVITY_FEATURE].bytes_list.value[0].decode() in expected


def test_blessed_personalised_model_is_pushed(run):
  summary = _evaluation(run)
  blessing = _outputs(run, configs.EVALUATOR_ID)["blessing"]
  assert summary.blessed and blessing.custom_properties["blessed"].int_value == 1
  pushed = _outputs(run, configs.PUSHER_ID)["pushed_model"]
  assert pushed.custom_properties["pushed"].int_value == 1
  personalized = _outputs(run, configs.META_EMBEDDING_GEN_ID)["personalized_model"]
  [version] = push.list_versions(run["paths"].serving_model_dir)
  served = push.version_path(run["paths"].serving_model_dir, version)
  with open(os.path.join(personalized.uri, "Format-Serving", "saved_model.pb"), "rb") as f:
    with open(os.path.join(served, "saved_model.pb"), "rb") as g:
      assert f.read() == g.read()
  # Warmup records travel with the version: 3 active training-period members + a cold one.
  assert len(warmup.read_warmup_requests(served)) == 4


def test_task_records_follow_the_time_split(run):
  tasks_uri = _outputs(run, "TaskGen")["tasks"].uri
  statistics = task_gen.read_statistics(tasks_uri)
  data_root = run["paths"].data_root
  train_members = {r["member_id"] for r in _csv_rows(f"{data_root}/train/interactions.csv")}
  eval_members = {r["member_id"] for r in _csv_rows(f"{data_root}/eval/interactions.csv")}
  for split in (task_gen.TRAIN_SPLIT, task_gen.EVAL_SPLIT):
    pattern = os.path.join(tasks_uri, f"Split-{split}", "*")
    task_format = task_records.infer_format(pattern)
    # Training records are padded to a full window's sides, evaluation records to
    # the caps; with the default settings both are 20 + 20.
    assert (task_format.support_length, task_format.query_length) == (
        task_settings.DEFAULTS.max_support, task_settings.DEFAULTS.max_query)
    records = [tf.train.Example.FromString(r.numpy()) for r in
               tf.data.TFRecordDataset(glob.glob(pattern), compression_type="GZIP")]
    keys = [r.features.feature[task_records.MEMBER_KEY].bytes_list.value[0].decode()
            for r in records]
    sizes = [r.features.feature[task_records.SUPPORT_SIZE].int64_list.value[0] for r in records]
    query_sizes = [r.features.feature[task_records.QUERY_SIZE].int64_list.value[0]
                   for r in records]
    assert len(records) == statistics[split]["tasks"]
    assert np.bincount(sizes, minlength=task_settings.DEFAULTS.max_support + 1).tolist() == (
        statistics[split]["support_size"]["histogram"])
    batch = next(iter(task_records.dataset(pattern, task_format, batch_size=len(records))))
    for side in (tensor_layout.SUPPORT, tensor_layout.QUERY):
      mask = batch[tensor_layout.side_key(side, tensor_layout.MASK)].numpy()
      # Real interactions first, padding after.
      assert (np.diff(mask, axis=1) <= 0).all()
    if split == task_gen.EVAL_SPLIT:
      assert set(keys) == eval_members
      cold = {k for k, s in zip(keys, sizes) if s == 0}
      assert cold == eval_members - train_members
      assert statistics[split]["cold_start_tasks"] == len(cold) > 0
      assert len(records) == len(set(keys))
    else:
      # Windows over each member's history: every training-period interaction is trained on.
      assert set(keys) == train_members
      train_rows = len(_csv_rows(f"{data_root}/train/interactions.csv"))
      assert sum(sizes) + sum(query_sizes) == train_rows


def test_both_trainers_report_evaluation_metrics(run):
  for node_id, model in ((configs.TRAINER_ID, "limaml"), (configs.BASELINE_TRAINER_ID, "global")):
    with open(os.path.join(_outputs(run, node_id)["model_run"].uri, trainer.METRICS_FILE)) as f:
      metrics = json.load(f)
    assert metrics["model"] == model
    assert 0.0 <= metrics["eval"]["auc"] <= 1.0 and np.isfinite(metrics["eval"]["loss"])
    # TensorBoard logs where TFX users look first (scalars: trainer_test).
    model_run = _outputs(run, node_id)["model_run"].uri
    assert glob.glob(os.path.join(model_run, "train", "events.out.tfevents.*")), node_id


def _request_rows(run):
  """16 evaluation-period rows; the first one's member never seen before."""
  rows = _csv_rows(os.path.join(run["paths"].data_root, "eval", "interactions.csv"))[:16]
  rows[0]["member_id"] = "never-seen-member"
  return rows


@pytest.fixture(scope="module")
def served(run):
  """The pushed model in a TF1 session, with serialized eval-period requests."""
  [version] = push.list_versions(run["paths"].serving_model_dir)
  path = push.version_path(run["paths"].serving_model_dir, version)
  transform_uri = _outputs(run, "Transform")["transform_graph"].uri
  raw_spec = serving_contract.serving_feature_spec(tft.TFTransformOutput(transform_uri).raw_feature_spec())
  requests = [serving_contract.raw_example(row, raw_spec).SerializeToString()
              for row in _request_rows(run)]
  graph = tf.Graph()
  session = tf.compat.v1.Session(graph=graph)
  meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
  yield session, meta_graph, requests
  session.close()


def _call(session, meta_graph, signature_name, inputs):
  signature = meta_graph.signature_def[signature_name]
  feed = {signature.inputs[k].name: v for k, v in inputs.items()}
  return session.run({k: v.name for k, v in signature.outputs.items()}, feed)


def test_pushed_model_personalises_known_members(served, run):
  session, meta_graph, requests = served
  assert {serving_contract.SERVING_SIGNATURE, serving_contract.PREDICT_WITH_EMBEDDING_SIGNATURE,
          personalized_model.MEMBER_EMBEDDING_SIGNATURE} <= set(meta_graph.signature_def)
  out = _call(session, meta_graph, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})
  probabilities = out[serving_contract.PROBABILITIES]
  assert probabilities.shape == (len(requests),)
  assert ((probabilities > 0) & (probabilities < 1)).all()
  np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-out[serving_contract.LOGITS])), rtol=1e-5)
  train_members = {r["member_id"] for r in
                   _csv_rows(os.path.join(run["paths"].data_root, "train", "interactions.csv"))}
  expected = [row["member_id"] in train_members for row in _request_rows(run)]
  assert out[serving_contract.PERSONALISED].tolist() == expected
  assert any(expected) and not expected[0]


def test_table_embedding_scores_like_the_external_embedding_path(served, run):
  session, meta_graph, requests = served
  table = _call(session, meta_graph, personalized_model.MEMBER_EMBEDDING_SIGNATURE,
                {personalized_model.MEMBER_ID_INPUT: [r["member_id"]
                                                      for r in _request_rows(run)]})
  known = table[serving_contract.PERSONALISED]
  assert known.any() and not known[0]
  default = _call(session, meta_graph, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})
  external = _call(session, meta_graph, serving_contract.PREDICT_WITH_EMBEDDING_SIGNATURE,
                   {serving_contract.EXAMPLES: requests,
                    tensor_layout.META_EMBEDDING: table[tensor_layout.META_EMBEDDING]})
  np.testing.assert_allclose(external[serving_contract.LOGITS][known], default[serving_contract.LOGITS][known],
                             rtol=1e-5, atol=1e-5)


def test_rerun_with_same_inputs_is_cached(run):
  lines = _run_cli(run["argv"])
  for component in COMPONENTS:
    assert any(component + ": cached" in line for line in lines), (component, lines)
  assert len(push.list_versions(run["paths"].serving_model_dir)) == 1


def test_not_blessed_model_is_not_pushed(run):
  """An unreachable gate: the Evaluator and Pusher rerun (the rest is cached), nothing is pushed.

  Runs after every other check of `run`: it changes the latest Evaluator and
  Pusher outputs.
  """
  before = os.listdir(run["paths"].serving_model_dir)
  lines = _run_cli(run["argv"][:-len(PERMISSIVE_GATE)] + ["--min-auc", "1"])
  assert any(configs.EVALUATOR_ID + ": done" in line for line in lines), lines
  assert any(configs.TRAINER_ID + ": cached" in line for line in lines), lines
  report = "\n".join(lines)
  assert "blessed: no" in report and "failed: overall: auc value" in report
  assert "serving model: not pushed: not blessed" in report
  assert _outputs(run, configs.EVALUATOR_ID)["blessing"].custom_properties["blessed"].int_value == 0
  assert _outputs(run, configs.PUSHER_ID)["pushed_model"].custom_properties["pushed"].int_value == 0
  assert os.listdir(run["paths"].serving_model_dir) == before


def test_anomalies_stop_the_run(tmp_path):
  """An evaluation period whose label is not an integer fails at AnomaliesGate."""
  data = synthetic.generate(num_members=40, num_items=20, seed=1)
  frame = data.interactions.astype({"label": object})
  cutoff = frame["timestamp"].quantile(0.8)
  frame.loc[frame.index[-1], "label"] = "yes"
  for split, part in (("train", frame[frame.timestamp < cutoff]),
                      ("eval", frame[frame.timestamp >= cutoff])):
    os.makedirs(tmp_path / "data" / split)
    part.to_csv(tmp_path / "data" / split / "interactions.csv", index=False)
  paths = local_runner.LocalPaths(str(tmp_path / "out"))
  pipeline = local_runner.create_local_pipeline(
      paths, str(tmp_path / "data"), data.spec, beam_pipeline_args=[IN_MEMORY.split("=", 1)[1]])
  expected = r"split 'eval', feature 'label': .*Expected data of type: INT but got STRING"
  with pytest.raises(anomalies_gate.DataAnomaliesError, match=expected):
    local_runner.run(pipeline, report=None)
  assert not local_runner.latest_outputs(paths, configs.PIPELINE_NAME, "Transform")


@pytest.mark.parametrize("config, message", [
    (model_config.ModelConfig(model="global"), "must describe the 'limaml' model"),
])
def test_model_configs_the_pipeline_cannot_train_and_serve_are_named(config, message):
  with pytest.raises(ValueError, match=message):
    pipeline_lib.create_pipeline("p", "/root", "/data", synthetic.SPEC, "/serving",
                                 model_config=config)
