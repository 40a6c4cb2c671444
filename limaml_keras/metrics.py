"""Exact ranking metrics for binary engagement labels, in numpy.

* `auc`: ROC AUC over all interactions, optionally weighted.
* `gauc`: group (per-member) AUC, the personalisation metric: each member's
  AUC, averaged with weights equal to that member's number of interactions.
* `log_loss`, `expected_calibration_error`: whether the predicted
  probabilities (sigmoid of the logits) can be read as probabilities.
* `evaluate_by_segment`: all of them, overall and per member-activity segment
  (how many support interactions the member had), to see who benefits from
  adaptation.

All AUCs count a tied positive/negative pair as half a correctly ordered pair,
which equals the Mann-Whitney statistic with average ranks for ties.
"""

from typing import Dict, Optional

import numpy as np

#: Equal-width probability bins of `expected_calibration_error`.
CALIBRATION_BINS = 10
#: Member-activity segments by support size, in order.
SEGMENTS = ("0", "1-5", "6-20", ">20")
# Smallest support size of every segment after the first.
_SEGMENT_LOWER_BOUNDS = (1, 6, 21)


def _validate(labels, scores, *others) -> tuple:
  """Returns `labels` and `scores` as float64 arrays, checking them and `others`."""
  labels = np.asarray(labels, dtype=np.float64)
  scores = np.asarray(scores, dtype=np.float64)
  if labels.ndim != 1 or scores.ndim != 1:
    raise ValueError(f"labels and scores must be 1-D, got shapes {labels.shape} and {scores.shape}")
  lengths = {len(labels), len(scores)} | {len(np.asarray(other)) for other in others}
  if len(lengths) != 1:
    raise ValueError(f"all inputs must have the same length, got lengths {sorted(lengths)}")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError("labels must be 0 or 1")
  if not np.all(np.isfinite(scores)):
    raise ValueError("scores must be finite (no NaN or inf)")
  return labels, scores


def _group_pair_counts(codes: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                       weights: np.ndarray, num_groups: int) -> tuple:
  """Counts correctly ordered positive/negative pairs within every group.

  Sorts by (group, score) once, collapses runs of tied scores inside a group,
  and for each run counts the negatives scored strictly below it in the same
  group plus half of the tied negatives.

  Args:
    codes: int64 [N] group index in `[0, num_groups)` of every interaction.
    labels: float64 [N] in {0, 1}.
    scores: float64 [N].
    weights: float64 [N] non-negative interaction weights.
    num_groups: number of groups.

  Returns:
    `(pairs, positives, negatives)`, float64 arrays of length `num_groups`:
    weighted correctly ordered pairs (ties count half), weight of positives,
    weight of negatives. A group's AUC is `pairs / (positives * negatives)`.
  """
  zeros = np.zeros(num_groups)
  if len(codes) == 0:
    return zeros, zeros, zeros
  order = np.lexsort((scores, codes))
  codes, scores = codes[order], scores[order]
  positive = weights[order] * labels[order]
  negative = weights[order] - positive

  run_starts = np.flatnonzero(
      np.concatenate([[True], (codes[1:] != codes[:-1]) | (scores[1:] != scores[:-1])]))
  run_codes = codes[run_starts]
  run_positive = np.add.reduceat(positive, run_starts)
  run_negative = np.add.reduceat(negative, run_starts)

  # Negatives in earlier runs: an exclusive cumulative sum, restarted per group.
  negative_before = np.cumsum(run_negative) - run_negative
  group_starts = np.flatnonzero(np.concatenate([[True], run_codes[1:] != run_codes[:-1]]))
  group_sizes = np.diff(np.append(group_starts, len(run_codes)))
  negative_below = negative_before - np.repeat(negative_before[group_starts], group_sizes)

  run_pairs = run_positive * (negative_below + 0.5 * run_negative)
  return (np.bincount(run_codes, run_pairs, minlength=num_groups),
          np.bincount(codes, positive, minlength=num_groups),
          np.bincount(codes, negative, minlength=num_groups))


def auc(labels, scores, weights: Optional[np.ndarray] = None) -> float:
  """ROC AUC: the probability that a positive outscores a negative.

  Ties count one half (equivalently, the rank statistic with average ranks).

  Args:
    labels: [N] binary labels (0/1 or bool).
    scores: [N] finite scores; only their order matters.
    weights: optional [N] non-negative weights; a pair counts with the product
      of its two weights.

  Returns:
    The AUC, or NaN when the positives or the negatives have zero total weight
    (for example only one class present, or no data).

  Raises:
    ValueError: on mismatched lengths, non-binary labels, non-finite scores or
      negative weights.
  """
  labels, scores = _validate(labels, scores, *(() if weights is None else (weights,)))
  if weights is None:
    weights = np.ones_like(labels)
  else:
    weights = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(weights) & (weights >= 0)):
      raise ValueError("weights must be finite and non-negative")
  codes = np.zeros(len(labels), dtype=np.int64)
  pairs, positives, negatives = _group_pair_counts(codes, labels, scores, weights, 1)
  if positives[0] <= 0 or negatives[0] <= 0:
    return float("nan")
  return float(pairs[0] / (positives[0] * negatives[0]))


def _member_terms(codes: np.ndarray, num_groups: int, labels: np.ndarray,
                  scores: np.ndarray) -> tuple:
  """`(qualifies, aucs, weights)`: which groups have both labels, their AUC and size."""
  pairs, positives, negatives = _group_pair_counts(codes, labels, scores, np.ones_like(labels),
                                                   num_groups)
  qualifies = (positives > 0) & (negatives > 0)
  return (qualifies, pairs[qualifies] / (positives[qualifies] * negatives[qualifies]),
          positives[qualifies] + negatives[qualifies])


def _gauc_from_codes(codes: np.ndarray, num_groups: int, labels: np.ndarray,
                     scores: np.ndarray) -> float:
  """`gauc` on validated inputs with members already encoded as `codes`."""
  qualifies, member_auc, member_weight = _member_terms(codes, num_groups, labels, scores)
  if not np.any(qualifies):
    return float("nan")
  return float(np.sum(member_auc * member_weight) / np.sum(member_weight))


def member_aucs(member_ids, labels, scores) -> tuple:
  """Every member's AUC and weight, the terms of `gauc`.

  Args:
    member_ids: [N] member of every interaction.
    labels: [N] binary labels.
    scores: [N] finite scores.

  Returns:
    `(members, aucs, weights)`: the sorted distinct members that have both a
    positive and a negative (the others have no AUC), their AUC and their
    interaction count. `gauc` is `sum(aucs * weights) / sum(weights)`.
  """
  labels, scores = _validate(labels, scores, member_ids)
  members, codes = np.unique(np.asarray(member_ids), return_inverse=True)
  qualifies, aucs, weights = _member_terms(codes.astype(np.int64), len(members), labels, scores)
  return members[qualifies], aucs, weights


def gauc(member_ids, labels, scores) -> float:
  """Group AUC: per-member AUC averaged with weights = member's interaction count.

  Members whose interactions are all positive or all negative have no AUC and
  are skipped: they contribute neither to the numerator nor to the weights.
  Vectorised: one sort over all rows, no Python loop over members.

  Args:
    member_ids: [N] member of every interaction (any hashable numpy dtype).
    labels: [N] binary labels (0/1 or bool).
    scores: [N] finite scores.

  Returns:
    The GAUC, or NaN when no member has both a positive and a negative.

  Raises:
    ValueError: on mismatched lengths, non-binary labels or non-finite scores.
  """
  labels, scores = _validate(labels, scores, member_ids)
  members, codes = np.unique(np.asarray(member_ids), return_inverse=True)
  return _gauc_from_codes(codes.astype(np.int64), len(members), labels, scores)


def log_loss(labels, logits) -> float:
  """Mean binary cross-entropy of `sigmoid(logits)` (natural log), NaN on no data.

  Computed from the logits (`softplus(z) - y * z`), so confident predictions
  never produce `log(0)`.
  """
  labels, logits = _validate(labels, logits)
  if not len(labels):
    return float("nan")
  return float(np.mean(np.logaddexp(0.0, logits) - labels * logits))


def sigmoid(logits) -> np.ndarray:
  """`1 / (1 + exp(-z))`, without overflow warnings for large |z|."""
  logits = np.asarray(logits, np.float64)
  return np.exp(-np.logaddexp(0.0, -logits))


def expected_calibration_error(labels, logits, bins: int = CALIBRATION_BINS) -> float:
  """ECE: |mean prediction − positive rate| per probability bin, weighted by bin size.

  Args:
    labels: [N] binary labels.
    logits: [N] finite logits (predicted probability = sigmoid).
    bins: equal-width bins over [0, 1].

  Returns:
    The ECE in [0, 1], or NaN when there is no data.
  """
  labels, logits = _validate(labels, logits)
  if not len(labels):
    return float("nan")
  probabilities = sigmoid(logits)
  index = np.minimum((probabilities * bins).astype(np.int64), bins - 1)
  count = np.bincount(index, minlength=bins)
  gap = np.abs(np.bincount(index, probabilities, minlength=bins) -
               np.bincount(index, labels, minlength=bins))
  return float(gap.sum() / count.sum())


def segment_of(support_sizes) -> np.ndarray:
  """Member-activity segment of every support size.

  Args:
    support_sizes: array of non-negative integers (support interactions a
      member had before the evaluated ones).

  Returns:
    String array of the same shape with values in `SEGMENTS`:
    "0", "1-5" (1 to 5), "6-20" (6 to 20) or ">20" (21 and more).

  Raises:
    ValueError: if a size is negative or not an integer.
  """
  sizes = np.asarray(support_sizes)
  if sizes.size and (np.any(sizes < 0) or np.any(sizes != np.floor(sizes))):
    raise ValueError("support sizes must be non-negative integers")
  index = np.searchsorted(_SEGMENT_LOWER_BOUNDS, sizes, side="right")
  return np.asarray(SEGMENTS)[index]


def evaluate_by_segment(member_ids, labels, scores,
                        support_sizes_per_interaction) -> Dict[str, object]:
  """Ranking and calibration metrics overall and per member-activity segment.

  Args:
    member_ids: [N] member of every interaction.
    labels: [N] binary labels.
    scores: [N] finite logits (AUC and gAUC use only their order; log loss
      and calibration read them as log-odds).
    support_sizes_per_interaction: [N] support size of the interaction's member
      (see `segment_of`).

  Returns:
    `{**summary, "segments": {segment: summary}}` where a summary is
    `{"auc", "gauc", "log_loss", "ece", "mean_prediction", "positive_rate":
    float, "members": int, "interactions": int}`, with every segment of
    `SEGMENTS` present (NaN metrics and zero counts when a segment is empty).
    "members" counts distinct members with interactions in the segment.
  """
  labels, scores = _validate(labels, scores, member_ids, support_sizes_per_interaction)
  members, codes = np.unique(np.asarray(member_ids), return_inverse=True)
  codes = codes.astype(np.int64)
  segments = segment_of(support_sizes_per_interaction)

  def summary(mask: np.ndarray) -> Dict[str, object]:
    return {
        "auc": auc(labels[mask], scores[mask]),
        "gauc": _gauc_from_codes(codes[mask], len(members), labels[mask], scores[mask]),
        "log_loss": log_loss(labels[mask], scores[mask]),
        "ece": expected_calibration_error(labels[mask], scores[mask]),
        "mean_prediction": _mean(sigmoid(scores[mask])),
        "positive_rate": _mean(labels[mask]),
        "members": int(len(np.unique(codes[mask]))),
        "interactions": int(np.sum(mask)),
    }

  overall = summary(np.ones(len(labels), dtype=bool))
  overall["segments"] = {segment: summary(segments == segment) for segment in SEGMENTS}
  return overall


def _mean(values: np.ndarray) -> float:
  return float(np.mean(values)) if len(values) else float("nan")
