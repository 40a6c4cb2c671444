"""End-to-end: the whole pipeline on a small synthetic CSV in a real LocalDagRunner.

One module-scoped run (through `limaml pipeline run`, Beam in-memory to keep
CI fast) feeds the checks of its components' outputs: TaskGen's records and
statistics, both Trainers' metrics, and the pushed SavedModel, loaded by the
TF1 session loader that TF Serving's C++ loader mirrors. A second run checks
the cache; a third pipeline checks that ExampleValidator anomalies stop a run.
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

from limaml_keras import cli
from limaml_keras import features
from limaml_keras import synthetic
from tfx_pipeline import anomalies_gate
from tfx_pipeline import configs
from tfx_pipeline import export
from tfx_pipeline import local_runner
from tfx_pipeline import spec_io
from tfx_pipeline import task_gen
from tfx_pipeline import task_records
from tfx_pipeline import trainer

pytestmark = pytest.mark.slow

IN_MEMORY = "--beam-arg=--direct_running_mode=in_memory"
COMPONENTS = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
              "AnomaliesGate", "Transform", "TaskGen", configs.TRAINER_ID,
              configs.BASELINE_TRAINER_ID, "Pusher")


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
  spec_io.save_spec(data.spec, str(root / "input" / spec_io.SPEC_FILE_NAME))
  argv = ["pipeline", "run", "--data", csv_path, "--output", str(root / "out"),
          "--epochs", "1", IN_MEMORY]
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
  assert "serving model: " + run["paths"].serving_model_dir in report


def test_task_records_follow_the_time_split(run):
  tasks_uri = _outputs(run, "TaskGen")["tasks"].uri
  statistics = task_gen.read_statistics(tasks_uri)
  data_root = run["paths"].data_root
  train_members = {r["member_id"] for r in _csv_rows(f"{data_root}/train/interactions.csv")}
  eval_members = {r["member_id"] for r in _csv_rows(f"{data_root}/eval/interactions.csv")}
  for split in (task_gen.TRAIN_SPLIT, task_gen.EVAL_SPLIT):
    pattern = os.path.join(tasks_uri, f"Split-{split}", "*")
    task_format = task_records.infer_format(pattern)
    assert (task_format.support_length, task_format.query_length) == (
        configs.MAX_SUPPORT, configs.MAX_QUERY)
    records = [tf.train.Example.FromString(r.numpy()) for r in
               tf.data.TFRecordDataset(glob.glob(pattern), compression_type="GZIP")]
    keys = [r.features.feature[task_records.MEMBER_KEY].bytes_list.value[0].decode()
            for r in records]
    sizes = [r.features.feature[task_records.SUPPORT_SIZE].int64_list.value[0] for r in records]
    assert len(records) == len(set(keys)) == statistics[split]["tasks"]
    assert np.bincount(sizes, minlength=configs.MAX_SUPPORT + 1).tolist() == (
        statistics[split]["support_size"]["histogram"])
    batch = next(iter(task_records.dataset(pattern, task_format, batch_size=len(records))))
    for side in (features.SUPPORT, features.QUERY):
      mask = batch[features.side_key(side, features.MASK)].numpy()
      # Real interactions first, padding after.
      assert (np.diff(mask, axis=1) <= 0).all()
    if split == task_gen.EVAL_SPLIT:
      assert set(keys) == eval_members
      cold = {k for k, s in zip(keys, sizes) if s == 0}
      assert cold == eval_members - train_members
      assert statistics[split]["cold_start_tasks"] == len(cold) > 0
    else:
      assert set(keys) <= train_members


def test_both_trainers_report_evaluation_metrics(run):
  for node_id, model in ((configs.TRAINER_ID, "limaml"), (configs.BASELINE_TRAINER_ID, "global")):
    with open(os.path.join(_outputs(run, node_id)["model_run"].uri, trainer.METRICS_FILE)) as f:
      metrics = json.load(f)
    assert metrics["model"] == model
    assert 0.0 <= metrics["eval"]["auc"] <= 1.0 and np.isfinite(metrics["eval"]["loss"])


@pytest.fixture(scope="module")
def served(run):
  """The pushed model in a TF1 session, with serialized eval-period requests."""
  [version] = os.listdir(run["paths"].serving_model_dir)
  path = os.path.join(run["paths"].serving_model_dir, version)
  transform_uri = _outputs(run, "Transform")["transform_graph"].uri
  raw_spec = export.serving_feature_spec(tft.TFTransformOutput(transform_uri))
  rows = _csv_rows(os.path.join(run["paths"].data_root, "eval", "interactions.csv"))[:16]
  rows[0]["member_id"] = "never-seen-member"
  requests = [export.raw_example(row, raw_spec).SerializeToString() for row in rows]
  graph = tf.Graph()
  session = tf.compat.v1.Session(graph=graph)
  meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
  yield session, meta_graph, requests
  session.close()


def _call(session, meta_graph, signature_name, inputs):
  signature = meta_graph.signature_def[signature_name]
  feed = {signature.inputs[k].name: v for k, v in inputs.items()}
  return session.run({k: v.name for k, v in signature.outputs.items()}, feed)


def test_pushed_model_scores_serialized_examples(served):
  session, meta_graph, requests = served
  assert {export.SERVING_SIGNATURE, export.PREDICT_WITH_EMBEDDING_SIGNATURE,
          export.ADAPT_SIGNATURE} <= set(meta_graph.signature_def)
  out = _call(session, meta_graph, export.SERVING_SIGNATURE, {export.EXAMPLES: requests})
  probabilities = out[export.PROBABILITIES]
  assert probabilities.shape == (len(requests),)
  assert ((probabilities > 0) & (probabilities < 1)).all()
  np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-out[export.LOGITS])), rtol=1e-5)


def test_adapt_then_score_with_embedding(served, run):
  session, meta_graph, requests = served
  tasks_uri = _outputs(run, "TaskGen")["tasks"].uri
  pattern = os.path.join(tasks_uri, "Split-eval", "*")
  batch = next(iter(task_records.dataset(pattern, task_records.infer_format(pattern), 4)))
  support = {k: v.numpy() for k, v in batch.items()
             if k == features.MEMBER_FEATURES or k.startswith(features.SUPPORT)}
  embeddings = _call(session, meta_graph, export.ADAPT_SIGNATURE,
                     support)[features.META_EMBEDDING]
  assert embeddings.shape == (4, 16) and np.isfinite(embeddings).all()
  adapted = np.repeat(embeddings[:1], len(requests), axis=0)
  default = _call(session, meta_graph, export.SERVING_SIGNATURE, {export.EXAMPLES: requests})
  personal = _call(session, meta_graph, export.PREDICT_WITH_EMBEDDING_SIGNATURE,
                   {export.EXAMPLES: requests, features.META_EMBEDDING: adapted})
  assert personal[export.PROBABILITIES].shape == (len(requests),)
  assert not np.allclose(personal[export.LOGITS], default[export.LOGITS])


def test_rerun_with_same_inputs_is_cached(run):
  lines = _run_cli(run["argv"])
  for component in COMPONENTS:
    assert any(component + ": cached" in line for line in lines), (component, lines)
  assert len(os.listdir(run["paths"].serving_model_dir)) == 1


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
