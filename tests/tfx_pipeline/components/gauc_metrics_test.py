"""Unit tests of the member-grouped TFMA metrics (their TFMA runs: ops/evaluation_results_test)."""

import numpy as np
import pytest

from tfx_pipeline.components import gauc_metrics


def test_member_auc_is_weighted_by_example_count_and_skips_one_class_members():
  assert gauc_metrics.member_auc(np.array([0, 1, 1]), np.array([[0.1], [0.9], [0.5]])) == (1.0, 3.0)
  assert gauc_metrics.member_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
  assert gauc_metrics.member_auc(np.array([]), np.array([])) is None


def test_bootstrap_weights_depend_only_on_the_member():
  first = gauc_metrics.bootstrap_weights("m1")
  assert first.shape == (gauc_metrics.BOOTSTRAP_REPLICATES,)
  np.testing.assert_array_equal(first, gauc_metrics.bootstrap_weights("m1"))
  assert not np.array_equal(first, gauc_metrics.bootstrap_weights("m2"))
  assert abs(first.mean() - 1.0) < 0.15  # Poisson(1).


def _accumulate(gains, weights):
  accumulator = np.zeros((2, gauc_metrics.BOOTSTRAP_REPLICATES))
  for member, (gain, weight) in enumerate(zip(gains, weights)):
    counts = weight * gauc_metrics.bootstrap_weights(f"m{member}")
    accumulator += (counts * gain, counts)
  return accumulator


def test_interval_has_the_normal_width_and_narrows_with_more_members():
  rng = np.random.default_rng(0)
  few = rng.normal(0.0, 0.1, 50)
  few += 0.005 - few.mean()  # A mean gain of 0.005 among 50 noisy members...
  low, high = gauc_metrics.gain_interval(_accumulate(few, np.ones(50)))
  assert low < 0 < 0.005 < high  # ...is not beyond the noise.
  # The normal approximation's 95 % width, 2 x 1.96 x sd / sqrt(n), within 25 %.
  assert (high - low) == pytest.approx(2 * 1.96 * few.std() / np.sqrt(50), rel=0.25)
  many = rng.normal(0.02, 0.1, 2000)
  low_many, high_many = gauc_metrics.gain_interval(_accumulate(many, np.ones(2000)))
  assert 0 < low_many < np.mean(many) < high_many  # Among 2000 members 0.02 is.
  assert high_many - low_many < (high - low) / 4


def test_no_gain_is_never_beyond_the_noise():
  low, high = gauc_metrics.gain_interval(_accumulate(np.zeros(30), np.arange(1, 31)))
  assert low == high == 0.0


def test_no_member_with_both_labels_gives_nan():
  assert all(np.isnan(gauc_metrics.gain_interval(np.zeros((2, 5)))))


def test_query_key_is_required():
  with pytest.raises(ValueError, match="needs a MetricsSpec with query_key"):
    gauc_metrics.GroupAUC().computations(query_key="")
