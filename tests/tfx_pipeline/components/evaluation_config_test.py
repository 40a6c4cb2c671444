"""Tests of the Evaluator's EvalConfig (its effect on real TFMA runs: evaluation_results_test)."""

import pytest
import tensorflow_model_analysis as tfma

from tfx_pipeline.components import activity_slices
from tfx_pipeline.pipeline import configs
from tfx_pipeline.components import evaluation_config
from limaml_keras import serving_contract


def _auc_threshold(config):
  [spec] = config.metrics_specs
  [auc] = [m for m in spec.metrics if m.class_name == "AUC"]
  [per_slice] = auc.per_slice_thresholds
  return per_slice


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


def test_gate_is_on_the_overall_slice_and_beats_the_baseline():
  per_slice = _auc_threshold(evaluation_config.eval_config(min_auc=0.6, min_auc_gain=0.01))
  assert list(per_slice.slicing_specs) == [tfma.SlicingSpec()]
  threshold = per_slice.threshold
  assert threshold.value_threshold.lower_bound.value == 0.6
  assert threshold.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
  assert threshold.change_threshold.absolute.value == 0.01


def test_without_baseline_only_the_value_threshold_remains():
  config = evaluation_config.eval_config(with_baseline=False)
  assert [s.name for s in config.model_specs] == [evaluation_config.CANDIDATE]
  threshold = _auc_threshold(config).threshold
  assert threshold.value_threshold.lower_bound.value == configs.MIN_AUC
  assert not threshold.HasField("change_threshold")
  tfma.utils.verify_eval_config(config)


@pytest.mark.parametrize("kwargs, message", [
    ({"min_auc": 1.5}, r"min_auc must be in \[0, 1\], got 1.5"),
    ({"min_auc_gain": -2.0}, r"min_auc_gain must be in \[-1, 1\], got -2.0"),
])
def test_bad_thresholds_are_named(kwargs, message):
  with pytest.raises(ValueError, match=message):
    evaluation_config.eval_config(**kwargs)
