"""Paired bootstrap over members: is one model's gAUC gain over another beyond the noise?

gAUC is a mean over members, so its noise is which members happen to be
scored. A paired Poisson bootstrap (Hanley & MacGibbon; TFMA's confidence
intervals use the Poisson bootstrap too) resamples members: every replicate
gives each member a Poisson(1) weight, the same for both models, and the
replicate's gain is the weighted mean of the members' AUC differences (weights
= Poisson weight x the member's example count, as in `metrics.gauc`).

A member's weights are drawn from a generator seeded by its id alone, so an
interval does not depend on the order members arrive in or on how the work is
split: the TFX Evaluator's Beam combiner (`tfx_pipeline.components.gauc_metrics`)
accumulates the same sums member by member (`GainSums`) that `gauc_gain` (`limaml
evaluate`) computes at once.
"""

import dataclasses
import zlib
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from limaml_keras import metrics

#: Bootstrap replicates of a gain interval.
BOOTSTRAP_REPLICATES = 1000
#: Coverage of a gain interval.
CONFIDENCE = 0.95
_BOOTSTRAP_SEED = 20240301
#: Fewer members than this give no interval: resampling one member only ever gives its own gain.
MIN_MEMBERS_FOR_INTERVAL = 2


def bootstrap_weights(member: str) -> np.ndarray:
  """The member's Poisson(1) weight in each of the `BOOTSTRAP_REPLICATES` replicates."""
  seed = zlib.crc32(member.encode("utf-8"))
  return np.random.default_rng([_BOOTSTRAP_SEED, seed]).poisson(1.0, BOOTSTRAP_REPLICATES)


def gain_interval(accumulator: np.ndarray, members: Optional[int] = None) -> Tuple[float, float]:
  """(lower, upper) `CONFIDENCE` bounds from `[2, replicates]` sums.

  Args:
    accumulator: row 0, per replicate, the sum over members of
      count x weight x AUC gain; row 1 the sum of count x weight.
    members: how many members the sums hold, when known: below
      `MIN_MEMBERS_FOR_INTERVAL` there is no interval (resampling one member
      only rescales its own gain, so every replicate gives the same number).

  Returns:
    The central interval of the replicates' gains; NaN when no member counts
    or there are too few members.
  """
  gain_sums, weights = accumulator
  counted = weights > 0
  if not counted.any() or (members is not None and members < MIN_MEMBERS_FOR_INTERVAL):
    return float("nan"), float("nan")
  gains = gain_sums[counted] / weights[counted]
  tail = (1.0 - CONFIDENCE) / 2
  return float(np.quantile(gains, tail)), float(np.quantile(gains, 1.0 - tail))


@dataclasses.dataclass
class GainSums:
  """The bootstrap's sums over the members seen so far, and how many they are.

  Attributes:
    sums: `[2, BOOTSTRAP_REPLICATES]`: per replicate, the sum of
      count x weight x AUC gain, and the sum of count x weight.
    members: the members added (the interval needs
      `MIN_MEMBERS_FOR_INTERVAL`).
  """
  sums: np.ndarray
  members: int = 0

  @classmethod
  def empty(cls) -> "GainSums":
    return cls(np.zeros((2, BOOTSTRAP_REPLICATES)))

  def add(self, member: str, gain: float, weight: float) -> "GainSums":
    """Adds one member's AUC gain with its example-count weight (in place; returns self)."""
    counts = weight * bootstrap_weights(member)
    self.sums[0] += counts * gain
    self.sums[1] += counts
    self.members += 1
    return self

  @classmethod
  def merge(cls, parts: Iterable["GainSums"]) -> "GainSums":
    merged = cls.empty()
    for part in parts:
      merged.sums += part.sums
      merged.members += part.members
    return merged

  def interval(self) -> Tuple[float, float]:
    """`gain_interval` of the sums: NaN bounds for fewer than two members."""
    return gain_interval(self.sums, members=self.members)


def member_weight_matrix(members: Sequence[str]) -> np.ndarray:
  """`[len(members), BOOTSTRAP_REPLICATES]` Poisson weights, one row per member."""
  if not len(members):
    return np.zeros((0, BOOTSTRAP_REPLICATES))
  return np.stack([bootstrap_weights(str(m)) for m in members])


def member_gain(members, differences, weights,
                weight_matrix: Optional[np.ndarray] = None) -> Dict[str, float]:
  """A gAUC gain from its members' terms, with its paired bootstrap interval.

  Args:
    members: [M] the members with an AUC (`metrics.member_aucs`).
    differences: [M] each member's AUC under the candidate minus under the
      baseline.
    weights: [M] each member's interaction count.
    weight_matrix: `member_weight_matrix(members)`, when the caller has it.

  Returns:
    `{"gain", "lower", "upper", "members"}`: the weighted mean difference
    (the candidate's gAUC minus the baseline's), its `CONFIDENCE` interval
    and M. NaN values when M is 0; NaN bounds when M is below
    `MIN_MEMBERS_FOR_INTERVAL`.
  """
  differences = np.asarray(differences, np.float64)
  weights = np.asarray(weights, np.float64)
  if not len(differences):
    nan = float("nan")
    return {"gain": nan, "lower": nan, "upper": nan, "members": 0}
  gain = float(np.sum(differences * weights) / np.sum(weights))
  rows = member_weight_matrix(members) if weight_matrix is None else weight_matrix
  counts = weights[:, np.newaxis] * rows
  lower, upper = gain_interval(np.stack([differences @ counts, counts.sum(axis=0)]),
                               members=len(differences))
  return {"gain": gain, "lower": lower, "upper": upper, "members": int(len(differences))}


def gauc_gain(member_ids, labels, candidate_scores, baseline_scores) -> Dict[str, float]:
  """The candidate's gAUC minus the baseline's, with its paired bootstrap interval.

  Args:
    member_ids: [N] member of every interaction.
    labels: [N] binary labels.
    candidate_scores: [N] the candidate's scores.
    baseline_scores: [N] the baseline's scores of the same interactions.

  Returns:
    `member_gain`'s dict: the gain equals `metrics.gauc(candidate) -
    metrics.gauc(baseline)`; "members" counts the members with both labels.
  """
  members, candidate_auc, weights = metrics.member_aucs(member_ids, labels, candidate_scores)
  _, baseline_auc, _ = metrics.member_aucs(member_ids, labels, baseline_scores)
  return member_gain(members, candidate_auc - baseline_auc, weights)
