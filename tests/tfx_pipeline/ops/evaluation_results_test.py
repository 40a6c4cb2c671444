"""Tests of reading TFMA results, on real TFMA runs of the pipeline's EvalConfig.

The evaluated SavedModels serve `serving_default` on serialized tf.Examples
like the pipeline's models, but their `probabilities` are a score column of
the example, so the scores, hence the expected AUCs and verdicts, are chosen
by the test.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from limaml_keras import metrics
from tfx_pipeline.components import activity_slices
from tfx_pipeline.components import evaluation_config
from tfx_pipeline.ops import evaluation_results
from limaml_keras import serving_contract

BUCKETS = ("0", "1-5", ">20")  # "6-20" has no example: absent from the table.


def _data(num=240, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, num)
  buckets = np.asarray(BUCKETS)[np.arange(num) % len(BUCKETS)]
  # Scores on a 0.05 grid (exact under TFMA's threshold-bucketed AUC).
  good = np.round(np.clip(0.5 + (labels - 0.5) * 0.5 + rng.normal(0, 0.25, num), 0, 1) * 20) / 20
  weak = np.round(np.clip(0.5 + (labels - 0.5) * 0.1 + rng.normal(0, 0.25, num), 0, 1) * 20) / 20
  return labels, buckets, good, weak


def _write(path, labels, buckets, scores):
  with tf.io.TFRecordWriter(path) as writer:
    for i, label in enumerate(labels):
      example = tf.train.Example()
      feature = example.features.feature
      feature["label"].int64_list.value.append(int(label))
      feature[activity_slices.ACTIVITY_FEATURE].bytes_list.value.append(buckets[i].encode())
      for name, values in scores.items():
        feature[f"p_{name}"].float_list.value.append(float(values[i]))
      writer.write(example.SerializeToString())


class _ScoreColumnModel(tf.Module):
  """Serves a float column of the request examples as `probabilities`."""

  def __init__(self, column):
    super().__init__()
    self._column = column

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=serving_contract.EXAMPLES)])
  def serve(self, examples):
    parsed = tf.io.parse_example(examples, {self._column: tf.io.FixedLenFeature([], tf.float32)})
    return {serving_contract.PROBABILITIES: parsed[self._column]}


def _score_column_model(path, column):
  model = _ScoreColumnModel(column)
  tf.saved_model.save(model, path, signatures={serving_contract.SERVING_SIGNATURE: model.serve})
  return path


def _evaluate(tmp_path, scores, with_baseline=True, **thresholds):
  """Runs TFMA with the pipeline's config on score-column models; returns the summary."""
  labels, buckets, _, _ = _data()
  tmp_path.mkdir(exist_ok=True)
  _write(str(tmp_path / "data.tfrecord"), labels, buckets, scores)
  config = evaluation_config.eval_config(with_baseline=with_baseline, **thresholds)
  models = [tfma.default_eval_shared_model(
      eval_saved_model_path=_score_column_model(str(tmp_path / spec.name), f"p_{spec.name}"),
      model_name=spec.name, eval_config=config) for spec in config.model_specs]
  tfma.run_model_analysis(eval_shared_model=models, eval_config=config,
                          data_location=str(tmp_path / "data.tfrecord"),
                          output_path=str(tmp_path / "out"))
  return evaluation_results.read_evaluation(str(tmp_path / "out"))


def _expected_auc(labels, scores, mask=None):
  mask = np.ones(len(labels), bool) if mask is None else mask
  return metrics.auc(labels[mask], scores[mask])


def test_better_candidate_is_blessed_and_every_number_is_read(tmp_path):
  labels, buckets, good, weak = _data()
  summary = _evaluate(tmp_path, {evaluation_config.CANDIDATE: good,
                                 evaluation_config.BASELINE: weak})
  assert summary.blessed and summary.failures == []
  assert summary.overall.name == evaluation_results.OVERALL
  assert summary.overall.example_count == len(labels)
  assert summary.overall.auc == pytest.approx(_expected_auc(labels, good), abs=1e-3)
  assert summary.overall.baseline_auc == pytest.approx(_expected_auc(labels, weak), abs=1e-3)
  assert [s.name for s in summary.slices] == list(BUCKETS)
  for result in summary.slices:
    mask = buckets == result.name
    assert result.example_count == mask.sum()
    assert result.auc == pytest.approx(_expected_auc(labels, good, mask), abs=1e-3)
    assert result.baseline_auc == pytest.approx(_expected_auc(labels, weak, mask), abs=1e-3)
  lines = evaluation_results.report_lines(summary)
  assert lines[0].startswith(f"evaluation (TFMA, evaluation period, {len(labels)} examples): "
                             f"personalised AUC {summary.overall.auc:.4f} vs global baseline "
                             f"{summary.overall.baseline_auc:.4f}")
  assert any(line.split() == [">20", str((buckets == ">20").sum()),
                              f"{summary.slices[-1].auc:.4f}",
                              f"{summary.slices[-1].baseline_auc:.4f}"] for line in lines)
  assert "blessed: yes" in lines


def test_candidate_worse_than_baseline_is_not_blessed(tmp_path):
  _, _, good, weak = _data()
  summary = _evaluate(tmp_path, {evaluation_config.CANDIDATE: weak,
                                 evaluation_config.BASELINE: good})
  assert not summary.blessed
  [failure] = summary.failures
  gain = summary.overall.auc - summary.overall.baseline_auc
  assert failure == (f"overall: auc gain over the baseline {gain:.4f} < required "
                     f"{evaluation_config.configs.MIN_AUC_GAIN:.4f}")
  assert "blessed: no" in evaluation_results.report_lines(summary)


def test_without_baseline_the_value_threshold_decides(tmp_path):
  _, _, good, _ = _data()
  summary = _evaluate(tmp_path, {evaluation_config.CANDIDATE: good}, with_baseline=False)
  assert summary.blessed and summary.overall.baseline_auc is None
  assert all(s.baseline_auc is None for s in summary.slices)
  assert "baseline" not in "\n".join(evaluation_results.report_lines(summary))
  strict = _evaluate(tmp_path / "strict", {evaluation_config.CANDIDATE: good},
                     with_baseline=False, min_auc=0.99)
  assert not strict.blessed
  assert strict.failures == [f"overall: auc value {strict.overall.auc:.4f} < required 0.9900"]


def test_missing_results_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no TFMA metrics in"):
    evaluation_results.read_evaluation(str(tmp_path))
