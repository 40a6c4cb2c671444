"""Tests of the gate and of reading TFMA results, on real TFMA runs of the pipeline's EvalConfig.

The evaluated SavedModels serve `serving_default` on serialized tf.Examples
like the pipeline's models, but their `probabilities` are a score column of
the example, so the scores, hence the expected metrics and verdicts, are
chosen by the test. The data: members with very different positive rates,
and labels that also depend on an item-level signal within each member.

* `offset` knows only each member's positive rate (what a model that learned
  per-member offsets predicts): it wins pooled AUC but orders no member's
  items (gAUC 0.5).
* `ranker` knows only the within-member signal (no member offset).
* `both` knows both.
"""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from limaml_keras import metrics
from limaml_keras import schema
from limaml_keras import serving_contract
from tfx_pipeline.components import activity_slices
from tfx_pipeline.components import evaluation_config
from tfx_pipeline.components import evaluator_extractors
from tfx_pipeline.ops import evaluation_results

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

BUCKETS = ("0", "1-5", ">20")  # "6-20" has no example: an empty row in the table.
MEMBERS, PER_MEMBER = 60, 12


def _data(seed=0):
  rng = np.random.default_rng(seed)
  member = np.repeat(np.arange(MEMBERS), PER_MEMBER)
  rate = np.linspace(0.03, 0.97, MEMBERS)[rng.permutation(MEMBERS)]
  signal = rng.normal(0, 1, member.size)
  logit = np.log(rate / (1 - rate))[member] + signal
  labels = (rng.random(member.size) < 1 / (1 + np.exp(-logit))).astype(int)
  buckets = np.asarray(BUCKETS)[member % len(BUCKETS)]
  scores = {
      "offset": rate[member],
      "ranker": 1 / (1 + np.exp(-signal)),
      "both": 1 / (1 + np.exp(-logit)),
  }
  # Scores on a 0.001 grid: exact under TFMA's threshold-bucketed pooled AUC.
  scores = {name: np.clip(np.round(s, 3), 0.001, 0.999) for name, s in scores.items()}
  return member, labels, buckets, scores


def _write(path, member, labels, buckets, scores):
  with tf.io.TFRecordWriter(path) as writer:
    for i, label in enumerate(labels):
      example = tf.train.Example()
      feature = example.features.feature
      feature[schema.LABEL_COLUMN].int64_list.value.append(int(label))
      feature[schema.MEMBER_ID_COLUMN].bytes_list.value.append(f"m{member[i]}".encode())
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


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
  """The data as TFRecords and one score-column SavedModel per score."""
  root = tmp_path_factory.mktemp("scored")
  member, labels, buckets, scores = _data()
  _write(str(root / "data.tfrecord"), member, labels, buckets, scores)
  models = {}
  for name in scores:
    model = _ScoreColumnModel(f"p_{name}")
    models[name] = str(root / name)
    tf.saved_model.save(model, models[name],
                        signatures={serving_contract.SERVING_SIGNATURE: model.serve})
  return {"root": root, "models": models, "data": (member, labels, buckets, scores)}


def _evaluate(scored, out, candidate, baseline=None, **thresholds):
  """Runs TFMA with the pipeline's config; returns the summary."""
  config = evaluation_config.eval_config(with_baseline=baseline is not None, **thresholds)
  paths = {evaluation_config.CANDIDATE: scored["models"][candidate],
           evaluation_config.BASELINE: scored["models"].get(baseline)}
  models = [tfma.default_eval_shared_model(eval_saved_model_path=paths[spec.name],
                                           model_name=spec.name, eval_config=config)
            for spec in config.model_specs]
  output = str(scored["root"] / out)
  # The Evaluator's extractors: every number below is read from slimmed extracts.
  extractors = evaluator_extractors.custom_extractors(eval_shared_model=models,
                                                      eval_config=config)
  tfma.run_model_analysis(eval_shared_model=models, eval_config=config,
                          data_location=str(scored["root"] / "data.tfrecord"),
                          output_path=output, extractors=extractors)
  return evaluation_results.read_evaluation(output)


def _log_loss(labels, scores):
  return float(-np.mean(labels * np.log(scores) + (1 - labels) * np.log(1 - scores)))


def test_offset_model_wins_pooled_auc_but_loses_gauc_and_is_not_blessed(scored):
  member, labels, _, scores = scored["data"]
  # The construction does what the test needs.
  assert metrics.auc(labels, scores["offset"]) > metrics.auc(labels, scores["ranker"]) + 0.02
  assert metrics.gauc(member, labels, scores["offset"]) == pytest.approx(0.5)
  summary = _evaluate(scored, "offset_vs_ranker", "offset", "ranker")
  overall = summary.overall
  assert overall.candidate.auc > overall.baseline.auc + 0.02
  assert overall.candidate.gauc == pytest.approx(0.5)
  assert overall.baseline.gauc == pytest.approx(metrics.gauc(member, labels, scores["ranker"]))
  low, high = overall.gauc_gain_interval
  assert low < high < 0
  assert not summary.blessed
  assert any(f.startswith("overall: gAUC gain over the baseline not beyond the noise: 95 % "
                          f"bootstrap lower bound {low:.4f} <= 0.0000") for f in summary.failures)
  assert "blessed: no" in evaluation_results.report_lines(summary)


def test_model_that_wins_gauc_is_blessed_and_every_number_is_read(scored):
  member, labels, buckets, scores = scored["data"]
  summary = _evaluate(scored, "both_vs_offset", "both", "offset")
  assert summary.blessed and summary.failures == []
  overall = summary.overall
  assert overall.name == evaluation_results.OVERALL
  assert overall.example_count == len(labels)
  for model, name in ((overall.candidate, "both"), (overall.baseline, "offset")):
    assert model.auc == pytest.approx(metrics.auc(labels, scores[name]), abs=1e-3)
    assert model.gauc == pytest.approx(metrics.gauc(member, labels, scores[name]), abs=1e-9)
    assert model.log_loss == pytest.approx(_log_loss(labels, scores[name]), abs=1e-4)
  gain = overall.candidate.gauc - overall.baseline.gauc
  low, high = overall.gauc_gain_interval
  assert 0 < low < gain < high
  assert [s.name for s in summary.slices] == list(evaluation_config.ACTIVITY_SLICES)
  for result in summary.slices:
    mask = buckets == result.name
    assert result.example_count == mask.sum()
    if not mask.any():  # The empty slice is kept, with no numbers.
      assert (result.candidate, result.baseline, result.gauc_gain_interval) == (None, None, None)
      continue
    assert result.candidate.gauc == pytest.approx(
        metrics.gauc(member[mask], labels[mask], scores["both"][mask]), abs=1e-9)
    assert result.baseline.auc == pytest.approx(
        metrics.auc(labels[mask], scores["offset"][mask]), abs=1e-3)
  lines = evaluation_results.report_lines(summary)
  assert lines[0].startswith(
      f"evaluation (TFMA, evaluation period, {len(labels)} examples): personalised gAUC "
      f"{overall.candidate.gauc:.4f}, AUC {overall.candidate.auc:.4f}, log loss "
      f"{overall.candidate.log_loss:.4f}; global baseline gAUC {overall.baseline.gauc:.4f}")
  rows = {line.split()[0]: line.split() for line in lines[2:-1]}
  assert rows["6-20"] == ["6-20", "0"]
  heavy = summary.slices[-1]
  assert rows[">20"][:8] == [">20", str(heavy.example_count)] + [
      f"{v:.4f}" for v in (heavy.candidate.auc, heavy.candidate.gauc, heavy.candidate.log_loss,
                           heavy.baseline.auc, heavy.baseline.gauc, heavy.baseline.log_loss)]
  assert "blessed: yes" in lines


def test_log_loss_worse_than_the_tolerance_is_not_blessed(scored):
  """`ranker` beats `offset` on gAUC but is uncalibrated: its log loss is far worse."""
  summary = _evaluate(scored, "ranker_vs_both_loss", "ranker", "offset")
  overall = summary.overall
  assert overall.gauc_gain_interval[0] > 0
  increase = overall.candidate.log_loss - overall.baseline.log_loss
  assert increase > 0.01
  assert not summary.blessed
  assert summary.failures == [
      f"overall: binary_crossentropy increase over the baseline {increase:.4f} > allowed 0.0100"]
  tolerant = _evaluate(scored, "ranker_vs_both_tolerant", "ranker", "offset",
                       max_log_loss_increase=1.0)
  assert tolerant.blessed


def test_without_baseline_the_auc_floor_decides(scored):
  summary = _evaluate(scored, "alone", "both")
  assert summary.blessed and not summary.has_baseline
  assert summary.overall.gauc_gain_interval is None
  assert "baseline" not in "\n".join(evaluation_results.report_lines(summary))
  strict = _evaluate(scored, "alone_strict", "both", min_auc=0.99)
  assert not strict.blessed
  assert strict.failures == [
      f"overall: auc value {strict.overall.candidate.auc:.4f} < required 0.9900"]


def test_missing_results_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no TFMA metrics in"):
    evaluation_results.read_evaluation(str(tmp_path))


def test_a_one_class_slice_has_no_auc():
  """TFMA reports AUC 0 for a slice with one class only (a cold-start slice of one example)."""
  values = {(evaluation_config.AUC, evaluation_config.CANDIDATE): 0.0,
            (evaluation_config.MEAN_LABEL, evaluation_config.CANDIDATE): 1.0,
            (evaluation_config.EXAMPLE_COUNT, evaluation_config.CANDIDATE): 1.0}
  result = evaluation_results._slice_result("0", values)  # pylint: disable=protected-access
  assert np.isnan(result.candidate.auc) and np.isnan(result.candidate.gauc)
  assert result.baseline is None and result.example_count == 1
