"""Tests of the paired member bootstrap (its TFMA combiner: tfx_pipeline/components/gauc_metrics)."""

import numpy as np
import pytest

from limaml_keras import bootstrap
from limaml_keras import metrics


def test_bootstrap_weights_depend_only_on_the_member():
  first = bootstrap.bootstrap_weights("m1")
  assert first.shape == (bootstrap.BOOTSTRAP_REPLICATES,)
  np.testing.assert_array_equal(first, bootstrap.bootstrap_weights("m1"))
  assert not np.array_equal(first, bootstrap.bootstrap_weights("m2"))
  assert abs(first.mean() - 1.0) < 0.15  # Poisson(1).


def _gain_sums(gains, weights, offset=0):
  sums = bootstrap.GainSums.empty()
  for i, (gain, weight) in enumerate(zip(gains, weights)):
    sums.add(f"m{i + offset}", gain, weight)
  return sums


def _accumulate(gains, weights):
  return _gain_sums(gains, weights).sums


def test_interval_has_the_normal_width_and_narrows_with_more_members():
  rng = np.random.default_rng(0)
  few = rng.normal(0.0, 0.1, 50)
  few += 0.005 - few.mean()  # A mean gain of 0.005 among 50 noisy members...
  low, high = bootstrap.gain_interval(_accumulate(few, np.ones(50)))
  assert low < 0 < 0.005 < high  # ...is not beyond the noise.
  # The normal approximation's 95 % width, 2 x 1.96 x sd / sqrt(n), within 25 %.
  assert (high - low) == pytest.approx(2 * 1.96 * few.std() / np.sqrt(50), rel=0.25)
  many = rng.normal(0.02, 0.1, 2000)
  low_many, high_many = bootstrap.gain_interval(_accumulate(many, np.ones(2000)))
  assert 0 < low_many < np.mean(many) < high_many  # Among 2000 members 0.02 is.
  assert high_many - low_many < (high - low) / 4


def test_no_gain_is_never_beyond_the_noise():
  low, high = bootstrap.gain_interval(_accumulate(np.zeros(30), np.arange(1, 31)))
  assert low == high == 0.0


def test_no_member_with_both_labels_gives_nan():
  assert all(np.isnan(bootstrap.gain_interval(np.zeros((2, 5)))))




def _two_models(num_members: int, gain: float, seed: int = 0):
  """Interactions of `num_members` members (8 each) scored by a baseline and a better candidate."""
  rng = np.random.default_rng(seed)
  members = np.repeat(np.arange(num_members), 8)
  labels = np.tile([0, 1], num_members * 4)
  baseline = rng.normal(size=len(labels)) + 0.5 * labels
  candidate = baseline + gain * labels * rng.uniform(0, 2, size=len(labels))
  return members, labels, candidate, baseline


def test_gauc_gain_is_the_gauc_difference_with_an_interval_around_it():
  members, labels, candidate, baseline = _two_models(400, gain=0.6)
  result = bootstrap.gauc_gain(members, labels, candidate, baseline)
  expected = metrics.gauc(members, labels, candidate) - metrics.gauc(members, labels, baseline)
  assert result["gain"] == pytest.approx(expected)
  assert result["members"] == 400
  assert 0 < result["lower"] < result["gain"] < result["upper"]


def test_gauc_gain_against_itself_is_exactly_zero_and_a_small_gain_among_few_is_noise():
  members, labels, candidate, baseline = _two_models(400, gain=0.6)
  same = bootstrap.gauc_gain(members, labels, baseline, baseline)
  assert same["gain"] == same["lower"] == same["upper"] == 0.0
  members, labels, _, baseline = _two_models(10, gain=0.0)
  other = baseline + np.random.default_rng(1).normal(size=len(baseline))  # as good, differently
  few = bootstrap.gauc_gain(members, labels, other, baseline)
  assert few["lower"] < few["gain"] < few["upper"] and few["lower"] < 0 < few["upper"]


def test_gauc_gain_uses_only_members_with_both_labels_and_a_given_weight_matrix():
  members, labels, candidate, baseline = _two_models(50, gain=0.6)
  labels = labels.copy()
  labels[members == 3] = 1  # member 3 has no AUC
  result = bootstrap.gauc_gain(members, labels, candidate, baseline)
  assert result["members"] == 49
  ids, ours, weights = metrics.member_aucs(members, labels, candidate)
  _, theirs, _ = metrics.member_aucs(members, labels, baseline)
  matrix = bootstrap.member_weight_matrix(ids)
  assert bootstrap.member_gain(ids, ours - theirs, weights, weight_matrix=matrix) == result
  nobody = bootstrap.gauc_gain(members, np.ones_like(labels), candidate, baseline)
  assert nobody["members"] == 0 and np.isnan(nobody["gain"]) and np.isnan(nobody["lower"])


def test_one_member_has_a_gain_but_no_interval():
  members, labels, candidate, baseline = _two_models(1, gain=0.6)
  result = bootstrap.gauc_gain(members, labels, candidate, baseline)
  assert result["members"] == 1 and np.isfinite(result["gain"])
  assert np.isnan(result["lower"]) and np.isnan(result["upper"])


def test_gain_interval_needs_two_members_when_told_how_many():
  sums = _accumulate([0.3], [4.0])
  assert all(np.isnan(bootstrap.gain_interval(sums, members=1)))
  assert all(np.isfinite(bootstrap.gain_interval(sums)))  # Not told: the sums alone decide.


def test_gain_sums_give_limaml_evaluates_interval_merged_in_any_split():
  """The Evaluator's interval is `bootstrap.member_gain`'s, however Beam splits the members."""
  rng = np.random.default_rng(1)
  gains, weights = rng.normal(0.01, 0.05, 40), rng.integers(2, 30, 40).astype(float)
  expected = bootstrap.member_gain([f"m{i}" for i in range(40)], gains, weights)
  merged = bootstrap.GainSums.merge([_gain_sums(gains[:15], weights[:15]),
                                      _gain_sums(gains[15:], weights[15:], offset=15)])
  assert merged.members == 40
  np.testing.assert_allclose(merged.interval(), (expected["lower"], expected["upper"]))


def test_one_member_gets_no_interval_in_the_evaluator_either():
  """Resampling one member gives its own gain in every replicate: a degenerate interval."""
  one = _gain_sums([0.2], [10.0])
  assert one.members == 1 and all(np.isnan(one.interval()))
  assert all(np.isfinite(bootstrap.GainSums.merge([one, _gain_sums([0.1], [5.0], 1)])
                         .interval()))
  assert all(np.isnan(bootstrap.GainSums.empty().interval()))
