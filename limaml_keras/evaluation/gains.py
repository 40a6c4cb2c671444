"""Paired gAUC gains between the compared methods, with member-bootstrap intervals, pooled over seeds.

Every method scores the same query interactions, so two methods can be
compared member by member: a member's AUC under the later method minus under
the earlier one, averaged over the seeds (which removes most of the training
noise), then resampled over members by `limaml_keras.bootstrap` (the noise of
which members happen to be scored). An interval that excludes 0 is a gain
beyond both.

The same is done per member-activity segment and per few-shot support size n,
so "LiMAML beats the ID model at n = 1" has an interval too.
"""

from typing import Dict, List, Mapping, Sequence

import numpy as np

from limaml_keras import bootstrap
from limaml_keras import metrics

#: The slice of `ScoreLog.add` that holds each task's full support.
ALL = "all"


class ScoreLog:
  """The query scores of every method, seed and slice of one evaluation run."""

  def __init__(self):
    self._keys: Dict[str, Dict[str, np.ndarray]] = {}
    self._scores: Dict[str, Dict[str, List[np.ndarray]]] = {}
    self._rows: Dict[object, np.ndarray] = {}  # each member's bootstrap weights, made once

  def add(self, method: str, slice_name: str, scored: Mapping[str, np.ndarray]) -> None:
    """Keeps one seed's `methods.score` output of `method` on `slice_name`.

    Raises:
      ValueError: the slice's interactions (members, labels, support sizes)
        differ from those another method or seed scored on it.
    """
    keys = {k: np.asarray(scored[k]) for k in ("member", "label", "support_size")}
    known = self._keys.setdefault(slice_name, keys)
    if any(not np.array_equal(known[k], keys[k]) for k in keys):
      raise ValueError(f"slice {slice_name!r}: methods or seeds scored different interactions")
    self._scores.setdefault(method, {}).setdefault(slice_name, []).append(
        np.asarray(scored["score"], np.float64))

  def gains(self, methods: Sequence[str]) -> Dict[str, Dict[str, Dict]]:
    """`{candidate: {baseline: record}}` for every method and every method before it.

    A record is `{"overall": gain, "segments": {segment: gain}, "few_shot":
    {n: gain}}` with every gain a `bootstrap.member_gain` dict plus "seeds"
    (how many seeds both methods have; the member AUC differences are
    averaged over them). Slices nobody scored are left out.
    """
    present = [m for m in methods if m in self._scores]
    out = {}
    for i, candidate in enumerate(present):
      for baseline in present[:i]:
        out.setdefault(candidate, {})[baseline] = self._pair(candidate, baseline)
    return out

  def _pair(self, candidate: str, baseline: str) -> Dict:
    record = {"segments": {}, "few_shot": {}}
    for slice_name, keys in self._keys.items():
      ours = self._scores[candidate].get(slice_name, [])
      theirs = self._scores[baseline].get(slice_name, [])
      seeds = min(len(ours), len(theirs))
      if not seeds:
        continue
      if slice_name == ALL:
        segments = metrics.segment_of(keys["support_size"])
        record["overall"] = self._gain(keys, ours[:seeds], theirs[:seeds])
        for segment in metrics.SEGMENTS:
          record["segments"][segment] = self._gain(keys, ours[:seeds], theirs[:seeds],
                                                   segments == segment)
      else:
        record["few_shot"][slice_name] = self._gain(keys, ours[:seeds], theirs[:seeds])
    return record

  def _gain(self, keys: Mapping[str, np.ndarray], ours: Sequence[np.ndarray],
            theirs: Sequence[np.ndarray], mask=None) -> Dict:
    """Seed-averaged paired gain of `ours` over `theirs` on the rows in `mask`."""
    mask = np.ones(len(keys["label"]), bool) if mask is None else mask
    members, labels = keys["member"][mask], keys["label"][mask]
    differences = []
    for candidate, baseline in zip(ours, theirs):
      ids, candidate_auc, weights = metrics.member_aucs(members, labels, candidate[mask])
      _, baseline_auc, _ = metrics.member_aucs(members, labels, baseline[mask])
      differences.append(candidate_auc - baseline_auc)
    missing = [m for m in ids if m not in self._rows]
    self._rows.update(zip(missing, bootstrap.member_weight_matrix(missing)))
    matrix = np.stack([self._rows[m] for m in ids]) if len(ids) else None
    result = bootstrap.member_gain(ids, np.mean(differences, axis=0), weights, matrix)
    result["seeds"] = len(ours)
    return result
