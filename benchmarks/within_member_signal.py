"""How much of a member's own ranking their earlier interactions explain beyond item quality.

A model-free diagnostic on the `member` protocol (`limaml_keras.evaluation.protocol`):
it bounds from below the personalisation headroom a dataset offers to any method that
reads a member's support, LiMAML included. Prints one JSON object with the
member-weighted gAUC of three scores of every query interaction:

* `item_rate`: the item's positive rate in the training data (smoothed towards the
  overall rate with `PRIOR` pseudo-interactions) — the non-personalised ordering;
* `support_knn`: item-based collaborative filtering from the member's own support
  (their latest `--max-support` training interactions):
  `sum_i sim(q, i) * (y_i - rate_i) / sum_i |sim(q, i)|`, where `sim` is the cosine
  of two items' residual columns `y - rate` in the member x item training matrix;
* `item_rate+support_knn`: their sum (both are in probability units, so the weight is
  1 and nothing is tuned on the query part).

`gain` = gAUC(`item_rate+support_knn`) - gAUC(`item_rate`): how much within-member
signal the support carries for a plain collaborative filter.

Usage:
  python benchmarks/within_member_signal.py --dataset movielens-100k \
      --data-dir /work/shared/data/movielens-100k [--validation] [--max-support 100]
"""

import argparse
import json
import os
import sys
from typing import Dict, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # pylint: disable=g-import-not-at-top
import pandas as pd  # pylint: disable=g-import-not-at-top

from limaml_keras import metrics  # pylint: disable=g-import-not-at-top
from limaml_keras import schema  # pylint: disable=g-import-not-at-top
from limaml_keras.evaluation import datasets, protocol  # pylint: disable=g-import-not-at-top

#: Pseudo-interactions at the overall positive rate added to every item's rate.
PRIOR = 5.0
#: Largest item catalogue the dense item x item similarity is built for.
MAX_ITEMS = 20_000


def item_rates(items: np.ndarray, labels: np.ndarray, num_items: int) -> np.ndarray:
  """Smoothed positive rate `[num_items]` of every item in the given interactions."""
  overall = float(labels.mean())
  positives = np.bincount(items, weights=labels, minlength=num_items)
  counts = np.bincount(items, minlength=num_items)
  return (positives + PRIOR * overall) / (counts + PRIOR)


def item_similarity(members: np.ndarray, items: np.ndarray, residuals: np.ndarray,
                    num_members: int, num_items: int) -> np.ndarray:
  """Cosine similarity `[num_items, num_items]` of the items' residual columns (diagonal 0)."""
  if num_items > MAX_ITEMS:
    raise ValueError(f"{num_items} items: the dense item similarity is built for at most "
                     f"{MAX_ITEMS}")
  matrix = np.zeros((num_members, num_items))
  np.add.at(matrix, (members, items), residuals)
  norms = np.linalg.norm(matrix, axis=0) + 1e-9
  similarity = (matrix.T @ matrix) / np.outer(norms, norms)
  np.fill_diagonal(similarity, 0.0)
  return similarity


def signal(frame: pd.DataFrame, max_support: Optional[int] = None,
           query_fraction: float = protocol.DEFAULT_QUERY_FRACTION) -> Dict[str, object]:
  """The three gAUCs of the module docstring on `frame`'s member protocol.

  Args:
    frame: raw-schema interactions (member id, item id, timestamp, label).
    max_support: each member's support is their latest `max_support` training
      interactions (None: all of them).
    query_fraction: each member's latest share of interactions that is scored.

  Returns:
    `{"gauc": {score: value}, "gain": ..., "members": ..., "query_interactions": ...}`.
  """
  if max_support is not None and max_support < 1:
    raise ValueError(f"max_support must be >= 1 or None, got {max_support}")
  is_query = protocol.member_query_rows(frame, query_fraction)
  member_codes, _ = pd.factorize(frame[schema.MEMBER_ID_COLUMN].astype(str))
  item_codes, _ = pd.factorize(frame[schema.ITEM_ID_COLUMN].astype(str))
  labels = frame[schema.LABEL_COLUMN].to_numpy(np.float64)
  num_members, num_items = member_codes.max() + 1, item_codes.max() + 1
  train = ~is_query
  rates = item_rates(item_codes[train], labels[train], num_items)
  residuals = labels - rates[item_codes]
  similarity = item_similarity(member_codes[train], item_codes[train], residuals[train],
                               num_members, num_items)
  # Each member's training rows in time order (ties keep input order), the latest last.
  order = np.lexsort((np.arange(len(frame)), frame[schema.TIMESTAMP_COLUMN].to_numpy(),
                      member_codes))
  knn = np.zeros(len(frame))
  for rows in np.split(order, np.flatnonzero(np.diff(member_codes[order])) + 1):
    support = rows[train[rows]]
    if max_support is not None:
      support = support[-max_support:]
    query = rows[is_query[rows]]
    if len(support) == 0 or len(query) == 0:
      continue
    sims = similarity[np.ix_(item_codes[query], item_codes[support])]
    knn[query] = sims @ residuals[support] / (np.abs(sims).sum(axis=1) + 1e-9)
  scores = {"item_rate": rates[item_codes], "support_knn": knn,
            "item_rate+support_knn": rates[item_codes] + knn}
  gaucs = {name: metrics.gauc(member_codes[is_query], labels[is_query], score[is_query])
           for name, score in scores.items()}
  return {"gauc": gaucs, "gain": gaucs["item_rate+support_knn"] - gaucs["item_rate"],
          "members": int(len(np.unique(member_codes[is_query]))),
          "query_interactions": int(is_query.sum())}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--dataset", choices=datasets.DATASETS, default="synthetic")
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--validation", action="store_true",
                      help="measure on the validation split inside the training data "
                           "(protocol.member_training_frame) instead of the query part")
  parser.add_argument("--max-support", type=int, default=None,
                      help="support cap: the member's latest N training interactions (default: all)")
  args = parser.parse_args(argv)
  if args.max_support is not None and args.max_support < 1:
    parser.error(f"--max-support must be >= 1, got {args.max_support}")
  frame, _ = datasets.load(args.dataset, args.data_dir)
  if args.validation:
    frame = protocol.member_training_frame(frame)
  record = {"dataset": args.dataset, "validation": args.validation,
            "max_support": args.max_support, **signal(frame, args.max_support)}
  print(json.dumps(record))
  return record


if __name__ == "__main__":
  main(sys.argv[1:])
