"""Unit tests of the member-grouped TFMA metrics (their TFMA runs: ops/evaluation_results_test)."""

import numpy as np
import pytest

from limaml_keras import bootstrap
from tfx_pipeline.components import gauc_metrics


def test_member_auc_is_weighted_by_example_count_and_skips_one_class_members():
  assert gauc_metrics.member_auc(np.array([0, 1, 1]), np.array([[0.1], [0.9], [0.5]])) == (1.0, 3.0)
  assert gauc_metrics.member_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
  assert gauc_metrics.member_auc(np.array([]), np.array([])) is None


def test_query_key_is_required():
  with pytest.raises(ValueError, match="needs a MetricsSpec with query_key"):
    gauc_metrics.GroupAUC().computations(query_key="")


def _gain_sums(gains, weights, offset=0):
  sums = gauc_metrics.GainSums.empty()
  for i, (gain, weight) in enumerate(zip(gains, weights)):
    sums.add(f"m{i + offset}", gain, weight)
  return sums


def test_gain_sums_give_limaml_evaluates_interval_merged_in_any_split():
  """The Evaluator's interval is `bootstrap.member_gain`'s, however Beam splits the members."""
  rng = np.random.default_rng(1)
  gains, weights = rng.normal(0.01, 0.05, 40), rng.integers(2, 30, 40).astype(float)
  expected = bootstrap.member_gain([f"m{i}" for i in range(40)], gains, weights)
  merged = gauc_metrics.GainSums.merge([_gain_sums(gains[:15], weights[:15]),
                                        _gain_sums(gains[15:], weights[15:], offset=15)])
  assert merged.members == 40
  np.testing.assert_allclose(merged.interval(), (expected["lower"], expected["upper"]))


def test_one_member_gets_no_interval_in_the_evaluator_either():
  """Resampling one member gives its own gain in every replicate: a degenerate interval."""
  one = _gain_sums([0.2], [10.0])
  assert one.members == 1 and all(np.isnan(one.interval()))
  assert all(np.isfinite(gauc_metrics.GainSums.merge([one, _gain_sums([0.1], [5.0], 1)])
                         .interval()))
  assert all(np.isnan(gauc_metrics.GainSums.empty().interval()))
