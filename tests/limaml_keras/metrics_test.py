"""Tests of limaml_keras.metrics against hand-computed values and slow references."""
import itertools
import math
import time

import numpy as np
import pytest

from limaml_keras import metrics


def _pairwise_auc(labels, scores, weights=None):
  """Reference AUC by enumerating every positive/negative pair."""
  weights = np.ones(len(labels)) if weights is None else np.asarray(weights, float)
  numerator = denominator = 0.0
  for i, j in itertools.product(range(len(labels)), repeat=2):
    if labels[i] == 1 and labels[j] == 0:
      pair = weights[i] * weights[j]
      denominator += pair
      numerator += pair * (1.0 if scores[i] > scores[j] else 0.5 if scores[i] == scores[j] else 0.0)
  return numerator / denominator if denominator else float("nan")


def _slow_gauc(member_ids, labels, scores):
  """Reference GAUC: a Python loop over members."""
  total = weight = 0.0
  for member in np.unique(member_ids):
    mask = member_ids == member
    if 0 < labels[mask].sum() < mask.sum():
      total += mask.sum() * _pairwise_auc(labels[mask], scores[mask])
      weight += mask.sum()
  return total / weight if weight else float("nan")


class TestAuc:

  def test_hand_computed(self):
    assert metrics.auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)

  def test_perfect_and_reversed(self):
    assert metrics.auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8]) == 1.0
    assert metrics.auc([0, 1, 0, 1], [0.9, 0.1, 0.8, 0.2]) == 0.0

  def test_all_scores_tied_is_one_half(self):
    assert metrics.auc([0, 1, 1, 0, 1], [0.3] * 5) == 0.5

  def test_partial_ties_count_half(self):
    # Pairs (pos, neg): (0.5, 0.5) tie = 0.5, (0.5, 0.2) = 1, (0.9, 0.5) = 1, (0.9, 0.2) = 1.
    assert metrics.auc([1, 0, 1, 0], [0.5, 0.5, 0.9, 0.2]) == pytest.approx(3.5 / 4)

  def test_integer_weights_equal_repeated_rows(self):
    labels, scores, weights = [0, 1, 0, 1], [0.2, 0.3, 0.6, 0.6], [1, 3, 2, 1]
    repeated = np.repeat(np.arange(4), weights)
    expected = metrics.auc(np.take(labels, repeated), np.take(scores, repeated))
    assert metrics.auc(labels, scores, weights) == pytest.approx(expected)
    assert metrics.auc(labels, scores, weights) == pytest.approx(
        _pairwise_auc(labels, scores, weights))

  def test_zero_weight_rows_are_ignored(self):
    assert metrics.auc([0, 1, 0], [0.1, 0.5, 0.9], [1, 1, 0]) == 1.0

  @pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0], []])
  def test_single_class_or_empty_is_nan(self, labels):
    assert math.isnan(metrics.auc(labels, np.linspace(0, 1, len(labels))))

  def test_matches_pairwise_reference_on_random_ties(self):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = rng.integers(0, 5, 60) / 4.0  # Many ties.
    weights = rng.uniform(0, 2, 60)
    assert metrics.auc(labels, scores) == pytest.approx(_pairwise_auc(labels, scores))
    assert metrics.auc(labels, scores, weights) == pytest.approx(
        _pairwise_auc(labels, scores, weights))

  @pytest.mark.parametrize("labels, scores, weights", [
      ([0, 2], [0.1, 0.2], None),
      ([0, 1], [0.1, float("nan")], None),
      ([0, 1], [0.1], None),
      ([0, 1], [0.1, 0.2], [1, -1]),
  ])
  def test_invalid_inputs_raise(self, labels, scores, weights):
    with pytest.raises(ValueError):
      metrics.auc(labels, scores, weights)


class TestGauc:

  def test_hand_computed_skips_single_class_members(self):
    members = ["a", "a", "a", "a", "b", "b", "b", "c", "c"]
    labels = [0, 0, 1, 1, 1, 0, 0, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.8, 0.9, 0.5, 0.95, 0.1, 0.2]
    # a: 0.75 over 4 rows; b: 0.5 over 3 rows; c: all positive, skipped.
    assert metrics.gauc(members, labels, scores) == pytest.approx((4 * 0.75 + 3 * 0.5) / 7)

  def test_no_qualifying_member_is_nan(self):
    assert math.isnan(metrics.gauc([1, 1, 2], [1, 1, 0], [0.1, 0.2, 0.3]))

  def test_matches_slow_reference_on_random_data(self):
    rng = np.random.default_rng(1)
    members = rng.integers(0, 40, 800)
    labels = rng.integers(0, 2, 800)
    scores = rng.integers(0, 6, 800) / 5.0
    assert metrics.gauc(members, labels, scores) == pytest.approx(
        _slow_gauc(members, labels, scores))

  def test_member_order_and_ids_do_not_matter(self):
    rng = np.random.default_rng(2)
    members = rng.integers(0, 30, 500)
    labels, scores = rng.integers(0, 2, 500), rng.normal(size=500)
    permutation = rng.permutation(500)
    expected = metrics.gauc(members, labels, scores)
    assert metrics.gauc(members.astype(str)[permutation], labels[permutation],
                        scores[permutation]) == pytest.approx(expected)

  def test_fast_on_100k_rows_and_10k_members(self):
    rng = np.random.default_rng(3)
    members = rng.integers(0, 10_000, 100_000).astype(str)
    labels, scores = rng.integers(0, 2, 100_000), rng.normal(size=100_000)
    start = time.perf_counter()
    value = metrics.gauc(members, labels, scores)
    assert time.perf_counter() - start < 1.0
    assert value == pytest.approx(0.5, abs=0.02)


class TestSegments:

  def test_boundaries(self):
    assert list(metrics.segment_of([0, 1, 5, 6, 20, 21, 1000])) == [
        "0", "1-5", "1-5", "6-20", "6-20", ">20", ">20"]

  def test_rejects_negative_or_fractional_sizes(self):
    with pytest.raises(ValueError):
      metrics.segment_of([-1])
    with pytest.raises(ValueError):
      metrics.segment_of([2.5])

  def test_evaluate_by_segment(self):
    members = np.array(["a", "a", "a", "a", "b", "b", "c", "c"])
    labels = np.array([0, 0, 1, 1, 1, 0, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.5, 0.7, 0.2])
    support = np.array([3, 3, 3, 3, 0, 0, 4, 4])
    result = metrics.evaluate_by_segment(members, labels, scores, support)

    assert result["auc"] == pytest.approx(metrics.auc(labels, scores))
    assert result["gauc"] == pytest.approx((4 * 0.75 + 2 * 1.0 + 2 * 0.0) / 8)
    assert list(result["segments"]) == list(metrics.SEGMENTS)
    small = result["segments"]["1-5"]
    assert (small["members"], small["interactions"]) == (2, 6)
    assert small["gauc"] == pytest.approx((4 * 0.75 + 2 * 0.0) / 6)
    assert small["auc"] == pytest.approx(metrics.auc(labels[support > 0], scores[support > 0]))
    cold = result["segments"]["0"]
    assert (cold["auc"], cold["gauc"], cold["members"], cold["interactions"]) == (1.0, 1.0, 1, 2)
    for empty in ("6-20", ">20"):
      segment = result["segments"][empty]
      assert (segment["members"], segment["interactions"]) == (0, 0)
      assert math.isnan(segment["auc"]) and math.isnan(segment["gauc"])


class TestCalibration:

  def test_log_loss_from_logits(self):
    assert metrics.log_loss([1, 0], [0.0, 0.0]) == pytest.approx(math.log(2))
    # Stable for confident logits: no log(0).
    assert metrics.log_loss([0], [1000.0]) == pytest.approx(1000.0)
    assert math.isnan(metrics.log_loss([], []))

  def test_expected_calibration_error(self):
    logits = np.log(np.array([0.2, 0.2, 0.8, 0.8]) / (1 - np.array([0.2, 0.2, 0.8, 0.8])))
    # Bin 0.2: rate 0.5 (gap 0.3); bin 0.8: rate 1.0 (gap 0.2) -> weighted 0.25.
    assert metrics.expected_calibration_error([0, 1, 1, 1], logits) == pytest.approx(0.25)
    assert metrics.expected_calibration_error([0, 1], [0.0, 0.0]) == pytest.approx(0.0)

  def test_segments_carry_calibration(self):
    result = metrics.evaluate_by_segment(["a", "a", "b"], [0, 1, 1], [-1.0, 1.0, 2.0], [0, 0, 3])
    assert result["log_loss"] == pytest.approx(metrics.log_loss([0, 1, 1], [-1.0, 1.0, 2.0]))
    assert result["positive_rate"] == pytest.approx(2 / 3)
    assert result["mean_prediction"] == pytest.approx(np.mean(metrics.sigmoid([-1.0, 1.0, 2.0])))
    empty = result["segments"][">20"]
    assert math.isnan(empty["log_loss"]) and math.isnan(empty["ece"]) and empty["members"] == 0


def test_member_aucs_are_the_terms_of_gauc():
  members = np.array(["b", "b", "b", "a", "a", "c", "c"])
  labels = np.array([0, 1, 1, 1, 0, 1, 1])
  scores = np.array([0.1, 0.9, 0.05, 0.2, 0.3, 0.5, 0.6])
  ids, aucs, weights = metrics.member_aucs(members, labels, scores)
  assert list(ids) == ["a", "b"]  # "c" has only positives
  np.testing.assert_allclose(aucs, [0.0, 0.5])
  np.testing.assert_allclose(weights, [2, 3])
  assert metrics.gauc(members, labels, scores) == pytest.approx(np.sum(aucs * weights) / weights.sum())
