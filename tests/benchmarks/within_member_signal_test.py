"""`benchmarks/within_member_signal.py`: the model-free within-member signal of a dataset."""

import numpy as np
import pandas as pd
import pytest

from limaml_keras import metrics
from limaml_keras import schema

from tests.benchmarks import scripts

benchmark = scripts.load("within_member_signal")


def _frame(taste: bool, members=120, items=40, per_member=30, seed=0):
  """Item quality plus, with `taste`, two member groups that like opposite item halves."""
  rng = np.random.default_rng(seed)
  member = np.repeat(np.arange(members), per_member)
  item = rng.integers(0, items, member.size)
  quality = np.linspace(-1, 1, items)[item]
  group = np.where(member % 2 == 0, 1.0, -1.0)
  half = np.where(item < items // 2, 1.0, -1.0)
  logit = quality + (2.0 * group * half if taste else 0.0)
  label = (rng.random(member.size) < 1 / (1 + np.exp(-logit))).astype(int)
  return pd.DataFrame({schema.MEMBER_ID_COLUMN: [f"m{m}" for m in member],
                       schema.ITEM_ID_COLUMN: [f"i{i}" for i in item],
                       schema.TIMESTAMP_COLUMN: np.tile(np.arange(per_member), members),
                       schema.LABEL_COLUMN: label})


def test_planted_member_taste_is_found_in_the_support():
  result = benchmark.signal(_frame(taste=True))
  assert result["gain"] > 0.1
  assert result["gauc"]["support_knn"] > 0.7
  assert result["members"] == 120 and result["query_interactions"] == 120 * 6


def test_item_quality_alone_leaves_no_within_member_signal():
  result = benchmark.signal(_frame(taste=False))
  assert result["gain"] < 0.0  # The filter only adds the noise of small supports.
  assert result["gauc"]["item_rate"] > 0.6


def test_scores_are_the_documented_formulas():
  frame = _frame(taste=True, members=6, items=5, per_member=10, seed=1)
  result = benchmark.signal(frame, max_support=3)
  is_query = np.tile(np.arange(10) >= 8, 6)  # floor(0.2 * 10) = 2 query rows per member
  members, items = frame.member_id.to_numpy(), frame.item_id.to_numpy()
  labels = frame.label.to_numpy(float)
  train = ~is_query
  overall = labels[train].mean()
  rate = {i: (labels[train & (items == i)].sum() + 5 * overall) /
             ((train & (items == i)).sum() + 5) for i in np.unique(items)}
  residual = labels - np.array([rate[i] for i in items])
  names = sorted(set(items))
  matrix = np.zeros((6, len(names)))
  for m, i, r in zip(members[train], items[train], residual[train]):
    matrix[int(m[1:]), names.index(i)] += r
  cosine = matrix.T @ matrix / np.outer(np.linalg.norm(matrix, axis=0) + 1e-9,
                                        np.linalg.norm(matrix, axis=0) + 1e-9)
  np.fill_diagonal(cosine, 0)
  knn = np.zeros(len(frame))
  for m in np.unique(members):
    rows = np.flatnonzero(members == m)
    support, query = rows[train[rows]][-3:], rows[is_query[rows]]
    for q in query:
      sims = np.array([cosine[names.index(items[q]), names.index(items[s])] for s in support])
      knn[q] = sims @ residual[support] / (np.abs(sims).sum() + 1e-9)
  item_rate = np.array([rate[i] for i in items])
  expected = metrics.gauc(members[is_query], labels[is_query], (item_rate + knn)[is_query])
  assert result["gauc"]["item_rate+support_knn"] == pytest.approx(expected, abs=1e-12)
  assert result["gauc"]["item_rate"] == pytest.approx(
      metrics.gauc(members[is_query], labels[is_query], item_rate[is_query]), abs=1e-12)


def test_bad_support_cap_is_named():
  with pytest.raises(ValueError, match="max_support"):
    benchmark.signal(_frame(taste=False), max_support=0)
  with pytest.raises(SystemExit):
    benchmark.main(["--max-support", "0"])
