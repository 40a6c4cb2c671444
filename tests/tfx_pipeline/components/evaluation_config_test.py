"""Tests of the Evaluator's EvalConfig (its effect on real TFMA runs: evaluation_results_test)."""

import pytest
import tensorflow_model_analysis as tfma

from limaml_keras import schema
from tfx_pipeline.components import activity_slices
from tfx_pipeline.components import gauc_metrics
from tfx_pipeline.pipeline import configs
from tfx_pipeline.components import evaluation_config
from limaml_keras import serving_contract


def _thresholds(config):
  """class name -> the one overall-slice threshold of that metric."""
  result = {}
  for spec in config.metrics_specs:
    for metric in spec.metrics:
      if metric.per_slice_thresholds:
        [per_slice] = metric.per_slice_thresholds
        assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]
        result[metric.class_name] = per_slice.threshold
  return result


def test_candidate_and_baseline_are_scored_through_serving_default():
  config = evaluation_config.eval_config()
  assert [(s.name, s.is_baseline) for s in config.model_specs] == [
      (evaluation_config.CANDIDATE, False), (evaluation_config.BASELINE, True)]
  for spec in config.model_specs:
    assert spec.signature_name == serving_contract.SERVING_SIGNATURE
    assert (spec.label_key, spec.prediction_key) == ("label", serving_contract.PROBABILITIES)
    assert spec.model_type == tfma.TF_GENERIC
  assert [list(s.feature_keys) for s in config.slicing_specs] == [
      [], [activity_slices.ACTIVITY_FEATURE]]
  tfma.utils.verify_eval_config(config)


def test_member_metrics_are_grouped_by_member_id():
  config = evaluation_config.eval_config()
  pooled, per_member = config.metrics_specs
  assert not pooled.query_key and per_member.query_key == schema.MEMBER_ID_COLUMN
  assert {m.class_name for m in per_member.metrics} == {"GroupAUC", "GroupAUCGainInterval"}
  assert {m.module for m in per_member.metrics} == {gauc_metrics.__name__}
  assert {"AUC", "BinaryCrossEntropy", "ExampleCount"} <= {m.class_name for m in pooled.metrics}


def test_gate_is_gauc_gain_beyond_the_noise_and_log_loss_tolerance():
  thresholds = _thresholds(evaluation_config.eval_config(
      min_auc=0.6, min_gauc_gain=0.0, max_log_loss_increase=0.02))
  assert set(thresholds) == {"AUC", "BinaryCrossEntropy", "GroupAUCGainInterval"}
  assert thresholds["AUC"].value_threshold.lower_bound.value == 0.6
  gain = thresholds["GroupAUCGainInterval"].value_threshold.lower_bound.value
  assert 0.0 < gain < 1e-300  # Strictly above 0 under TFMA's >=.
  loss = thresholds["BinaryCrossEntropy"].change_threshold
  assert loss.direction == tfma.MetricDirection.LOWER_IS_BETTER
  assert loss.absolute.value == 0.02


def test_without_baseline_only_the_auc_floor_remains():
  config = evaluation_config.eval_config(with_baseline=False)
  assert [s.name for s in config.model_specs] == [evaluation_config.CANDIDATE]
  thresholds = _thresholds(config)
  assert set(thresholds) == {"AUC"}
  assert thresholds["AUC"].value_threshold.lower_bound.value == configs.MIN_AUC
  tfma.utils.verify_eval_config(config)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_auc": 1.5}, r"min_auc must be in \[0, 1\], got 1.5"),
    ({"min_gauc_gain": -2.0}, r"min_gauc_gain must be in \[-1, 1\), got -2.0"),
    ({"max_log_loss_increase": float("nan")},
     r"max_log_loss_increase must be finite and >= 0, got nan"),
])
def test_bad_thresholds_are_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    evaluation_config.eval_config(**kwargs)
