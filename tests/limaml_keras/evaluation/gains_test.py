"""Tests of the paired, seed-pooled gAUC gains of `limaml evaluate` (`evaluation/gains.py`)."""

import numpy as np
import pytest

from limaml_keras import bootstrap
from limaml_keras import metrics
from limaml_keras.evaluation import gains


def _scored(seed, members=12, per_member=8, support_size=30):
  rng = np.random.default_rng(seed)
  member = np.repeat(np.arange(members), per_member)
  label = np.tile([0, 1], members * per_member // 2).astype(float)
  return {"member": member, "label": label, "support_size": np.full(member.size, support_size),
          "score": rng.normal(size=member.size) + label * rng.uniform(0, 2)}


def _log(seeds=2):
  log = gains.ScoreLog()
  for seed in range(seeds):
    for offset, method in enumerate(("global", "limaml")):
      scored = _scored(10 * seed + offset)
      log.add(method, gains.ALL, scored)
      log.add(method, "1", scored)
  return log


def test_gain_is_the_difference_of_the_seed_mean_gaucs_with_the_bootstrap_interval():
  overall = _log().gains(["global", "limaml"])["limaml"]["global"]["overall"]
  runs = {(seed, method): _scored(10 * seed + offset)
          for seed in range(2) for offset, method in enumerate(("global", "limaml"))}
  gauc = {m: np.mean([metrics.gauc(r["member"], r["label"], r["score"])
                      for (_, method), r in runs.items() if method == m])
          for m in ("global", "limaml")}
  assert overall["gain"] == pytest.approx(gauc["limaml"] - gauc["global"])
  assert overall["seeds"] == 2 and overall["members"] == 12
  assert overall["lower"] <= overall["gain"] <= overall["upper"]
  # Seed-averaged member differences, then `bootstrap.member_gain` over the members.
  aucs = {key: metrics.member_aucs(r["member"], r["label"], r["score"]) for key, r in runs.items()}
  differences = np.mean([aucs[(s, "limaml")][1] - aucs[(s, "global")][1] for s in range(2)], axis=0)
  members, _, weights = aucs[(0, "global")]
  expected = bootstrap.member_gain(members, differences, weights)
  assert (overall["lower"], overall["upper"]) == pytest.approx((expected["lower"], expected["upper"]))


def test_every_method_gets_a_record_over_every_earlier_one_per_segment_and_n():
  record = _log().gains(["global", "id_embedding", "limaml"])
  assert list(record) == ["limaml"] and list(record["limaml"]) == ["global"]
  pair = record["limaml"]["global"]
  assert list(pair["segments"]) == list(metrics.SEGMENTS)
  assert pair["segments"]["0"]["members"] == 0 and np.isnan(pair["segments"]["0"]["gain"])
  assert pair["segments"][">20"]["gain"] == pytest.approx(pair["overall"]["gain"])
  assert list(pair["few_shot"]) == ["1"]


def test_a_slice_scored_on_different_interactions_is_refused():
  log = gains.ScoreLog()
  log.add("global", gains.ALL, _scored(0))
  other = dict(_scored(0), label=1.0 - _scored(0)["label"])
  with pytest.raises(ValueError, match="scored different interactions"):
    log.add("limaml", gains.ALL, other)
