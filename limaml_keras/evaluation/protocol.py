"""The time-based evaluation protocol, as in production.

* One cutoff time splits the interactions: the **training period** (before)
  and the **query period** (at or after).
* Everything learnt — vocabularies, normalisation, model weights — comes from
  the training period only.
* For each member with query-period interactions, **support** = their latest
  training-period interactions (capped), **query** = their query-period
  interactions. Members unseen before the cutoff are cold start (no support).
* Hyper-parameters are tuned by applying the same protocol *inside* the
  training period (`validation_split`), never on the query period.
"""

import dataclasses
from typing import Dict, Optional

import numpy as np
import pandas as pd

from limaml_keras import schema
from limaml_keras.preprocessing import MEMBER_KEY, TIMESTAMP, Preprocessor
from limaml_keras.tasks import Tasks, build_tasks

DEFAULT_QUERY_FRACTION = 0.2
DEFAULT_MAX_SUPPORT = 50
DEFAULT_WINDOW = 40


@dataclasses.dataclass(frozen=True)
class Split:
  """One application of the protocol.

  Attributes:
    cutoff: the first second of the query period.
    preprocessor: fitted on the training period only.
    train: per-interaction arrays of the training period.
    evaluation: tasks of members with query-period interactions.
  """
  cutoff: int
  preprocessor: Preprocessor
  train: Dict[str, np.ndarray]
  evaluation: Tasks


def cutoff_at_quantile(frame: pd.DataFrame, query_fraction: float) -> int:
  """The timestamp that leaves about `query_fraction` of interactions after it."""
  if not 0.0 < query_fraction < 1.0:
    raise ValueError(f"query_fraction must be in (0, 1), got {query_fraction}")
  timestamps = frame[schema.TIMESTAMP_COLUMN].to_numpy()
  return int(np.quantile(timestamps, 1.0 - query_fraction, method="higher"))


def time_split(frame: pd.DataFrame,
               spec: schema.FeatureSpec,
               query_fraction: float = DEFAULT_QUERY_FRACTION,
               max_support: int = DEFAULT_MAX_SUPPORT,
               max_query: Optional[int] = None) -> Split:
  """Applies the protocol to `frame` (see the module docstring).

  Args:
    frame: raw-schema interactions.
    spec: their feature spec.
    query_fraction: share of interactions (by time) in the query period.
    max_support: support cap (the member's latest interactions are kept).
    max_query: query cap (None: every query-period interaction is scored).

  Returns:
    The `Split`.
  """
  cutoff = cutoff_at_quantile(frame, query_fraction)
  timestamps = frame[schema.TIMESTAMP_COLUMN].to_numpy()
  before = frame[timestamps < cutoff]
  if before.empty:
    raise ValueError("no interaction before the cutoff; the training period is empty")
  preprocessor = Preprocessor(spec).fit(before)
  everything = preprocessor.transform(frame)
  evaluation = build_tasks(everything, cutoff_time=cutoff, max_support=max_support,
                           max_query=max_query)
  train = {k: v[timestamps < cutoff] for k, v in everything.items()}
  return Split(cutoff=cutoff, preprocessor=preprocessor, train=train, evaluation=evaluation)


def validation_split(frame: pd.DataFrame, spec: schema.FeatureSpec,
                     query_fraction: float = DEFAULT_QUERY_FRACTION, **kwargs) -> Split:
  """The protocol applied to the training period only (for tuning)."""
  cutoff = cutoff_at_quantile(frame, query_fraction)
  training_period = frame[frame[schema.TIMESTAMP_COLUMN].to_numpy() < cutoff]
  return time_split(training_period, spec, query_fraction=query_fraction, **kwargs)


def training_tasks(train: Dict[str, np.ndarray], window: int = DEFAULT_WINDOW,
                   support_fraction: float = 0.5) -> Tasks:
  """Meta-training tasks from training-period interactions.

  Each member's time-ordered history is cut into consecutive windows of
  `window` interactions; each window is one task whose earlier
  `support_fraction` is support and the rest query. Every training
  interaction lands in exactly one task (a member with one interaction is a
  cold-start task), so plain baselines trained on these tasks see all data.

  Args:
    train: per-interaction arrays (`Split.train`).
    window: interactions per task.
    support_fraction: support share of each window.

  Returns:
    The tasks.
  """
  if window < 2:
    raise ValueError(f"window must be >= 2, got {window}")
  keys = train[MEMBER_KEY]
  order = np.lexsort((train[TIMESTAMP], keys))
  sorted_keys = keys[order]
  starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
  rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
  chunk = np.empty(len(order), np.int64)
  chunk[order] = rank // window
  windowed = dict(train)
  windowed[MEMBER_KEY] = np.char.add(np.char.add(keys.astype(str), "#"), chunk.astype(str))
  return build_tasks(windowed, support_fraction=support_fraction, max_support=None,
                     max_query=None, min_interactions=1)
