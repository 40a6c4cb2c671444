"""The evaluation protocols: `time` (global cutoff, as in production) and `member`.

**time** (`time_split`):

* One cutoff time splits the interactions: the **training period** (before)
  and the **query period** (at or after).
* Everything learnt — vocabularies, normalisation, model weights — comes from
  the training period only.
* For each member with query-period interactions, **support** = their latest
  training-period interactions (capped), **query** = their query-period
  interactions. Members unseen before the cutoff are cold start (no support).
* Hyper-parameters are tuned by applying the same protocol *inside* the
  training period (`validation_split`), never on the query period.

**member** (`member_split`), which can see few-shot adaptation:

* Per member, chronologically: the latest `query_fraction` of the member's
  interactions (at least one) are **query**; everything earlier is
  **training data** and the member's **support** (a member with a single
  interaction has no training part and is cold start).
* Held-out-members variant (`held_out_fraction > 0`): a seeded share of members
  contributes nothing to training; at evaluation they are adapted only from
  their own earlier interactions, as new members are in production.
* `member_validation_split` applies the same split to the training data only
  (for tuning and ablation), never looking at the query part.
* `truncate_support` keeps each task's latest n support interactions (the
  few-shot curve, `FEW_SHOT_SIZES`).
* Vocabularies and normalisation are fitted on the training data only.
"""

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np
import pandas as pd

from limaml_keras import tensor_layout as F
from limaml_keras import schema
from limaml_keras import task_settings
from limaml_keras.preprocessing import Preprocessor
from limaml_keras.tensor_layout import TIMESTAMP
from limaml_keras.tasks import Tasks, build_tasks

#: Share of interactions in the query period (the pipeline's evaluation period).
DEFAULT_QUERY_FRACTION = task_settings.EVAL_FRACTION
DEFAULT_MAX_SUPPORT = task_settings.DEFAULTS.max_support
DEFAULT_HELD_OUT_FRACTION = 0.2
#: Support sizes of the few-shot curve.
FEW_SHOT_SIZES = (0, 1, 2, 5, 10, 20, 50)


@dataclasses.dataclass(frozen=True)
class Split:
  """One application of the protocol.

  Attributes:
    cutoff: the first second of the query period (`time`; None for `member`).
    preprocessor: fitted on the training period only.
    train: per-interaction arrays of the training period.
    evaluation: tasks of members with query-period interactions.
    protocol: "time" or "member".
    held_out_members: raw ids of the members kept out of training (`member`).
  """
  cutoff: Optional[int]
  preprocessor: Preprocessor
  train: Dict[str, np.ndarray]
  evaluation: Tasks
  protocol: str = "time"
  held_out_members: Tuple[str, ...] = ()


def cutoff_at_quantile(frame: pd.DataFrame, query_fraction: float) -> int:
  """The pipeline's cutoff (`task_settings.cutoff_time`) of `frame`'s timestamps."""
  if isinstance(query_fraction, bool) or not 0.0 < query_fraction < 1.0:
    raise ValueError(f"query_fraction must be in (0, 1), got {query_fraction}")
  return task_settings.cutoff_time(frame[schema.TIMESTAMP_COLUMN].to_numpy(), query_fraction)


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


def _check_fraction(name: str, value: float, allow_zero: bool = False) -> None:
  low_ok = value >= 0.0 if allow_zero else value > 0.0
  if not (low_ok and value < 1.0):
    raise ValueError(f"{name} must be in {'[0' if allow_zero else '(0'}, 1), got {value}")


def member_query_rows(frame: pd.DataFrame, query_fraction: float = DEFAULT_QUERY_FRACTION
                      ) -> np.ndarray:
  """Boolean `[len(frame)]`: each member's latest `query_fraction` (at least one) rows.

  A member with n interactions has `max(1, floor(query_fraction * n))` query
  rows: the latest by timestamp (ties keep input order).
  """
  _check_fraction("query_fraction", query_fraction)
  members = frame[schema.MEMBER_ID_COLUMN].astype(str).to_numpy()
  timestamps = frame[schema.TIMESTAMP_COLUMN].to_numpy()
  codes, _ = pd.factorize(members)
  order = np.lexsort((np.arange(len(frame)), timestamps, codes))
  counts = np.bincount(codes)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
  sorted_codes = codes[order]
  rank = np.arange(len(order)) - starts[sorted_codes]
  num_query = np.maximum(1, np.floor(query_fraction * counts).astype(np.int64))
  is_query = np.empty(len(frame), bool)
  is_query[order] = rank >= counts[sorted_codes] - num_query[sorted_codes]
  return is_query


def held_out_member_ids(frame: pd.DataFrame, fraction: float, seed: int) -> Tuple[str, ...]:
  """A seeded `fraction` of the members (sorted raw ids); reproducible for a seed."""
  _check_fraction("held_out_fraction", fraction, allow_zero=True)
  members = np.sort(frame[schema.MEMBER_ID_COLUMN].astype(str).unique())
  count = int(round(fraction * len(members)))
  if fraction > 0 and count == 0:
    count = 1
  chosen = np.random.default_rng(seed).choice(len(members), size=count, replace=False)
  return tuple(sorted(members[chosen]))


def member_split(frame: pd.DataFrame,
                 spec: schema.FeatureSpec,
                 query_fraction: float = DEFAULT_QUERY_FRACTION,
                 held_out_fraction: float = 0.0,
                 seed: int = 0,
                 max_support: Optional[int] = DEFAULT_MAX_SUPPORT,
                 max_query: Optional[int] = None) -> Split:
  """The `member` protocol (see the module docstring).

  Args:
    frame: raw-schema interactions.
    spec: their feature spec.
    query_fraction: share of each member's interactions (the latest) in query.
    held_out_fraction: share of members kept out of training entirely (0: none).
    seed: chooses the held-out members.
    max_support: support cap (each member's latest training interactions).
    max_query: query cap (None: every query interaction is scored).

  Returns:
    The `Split` (`protocol="member"`, `cutoff=None`). Its `train` holds the
    training rows of the members not held out; `evaluation` has one task per
    member (support = earlier rows, query = latest rows).

  Raises:
    ValueError: bad fractions, or no training interaction left.
  """
  is_query = member_query_rows(frame, query_fraction)
  held_out = held_out_member_ids(frame, held_out_fraction, seed)
  members = frame[schema.MEMBER_ID_COLUMN].astype(str).to_numpy()
  is_held_out = np.isin(members, np.asarray(held_out, dtype=object)) if held_out else (
      np.zeros(len(frame), bool))
  training = ~is_query & ~is_held_out
  if not training.any():
    raise ValueError("no training interaction: every member's interactions are query or held out")
  preprocessor = Preprocessor(spec).fit(frame[training])
  everything = preprocessor.transform(frame)
  train = {k: v[training] for k, v in everything.items()}
  # A per-member clock: training rows before query rows, each in time order, so
  # the global-cutoff task builder splits every member at its own boundary.
  timestamps = everything[TIMESTAMP]
  bound = len(frame) + 1
  clock = np.empty(len(frame), np.int64)
  order = np.lexsort((np.arange(len(frame)), timestamps))
  clock[order] = np.arange(len(frame))
  tasks_input = dict(everything)
  tasks_input[TIMESTAMP] = clock + bound * is_query
  evaluation = build_tasks(tasks_input, cutoff_time=bound, max_support=max_support,
                           max_query=max_query)
  return Split(cutoff=None, preprocessor=preprocessor, train=train, evaluation=evaluation,
               protocol="member", held_out_members=held_out)


def member_training_frame(frame: pd.DataFrame, query_fraction: float = DEFAULT_QUERY_FRACTION,
                          held_out_fraction: float = 0.0, seed: int = 0) -> pd.DataFrame:
  """The raw rows `member_split` trains on (no query rows, no held-out members)."""
  is_query = member_query_rows(frame, query_fraction)
  held_out = held_out_member_ids(frame, held_out_fraction, seed)
  members = frame[schema.MEMBER_ID_COLUMN].astype(str)
  return frame[~is_query & ~members.isin(held_out).to_numpy()]


def member_validation_split(frame: pd.DataFrame, spec: schema.FeatureSpec,
                            query_fraction: float = DEFAULT_QUERY_FRACTION,
                            held_out_fraction: float = 0.0, seed: int = 0, **kwargs) -> Split:
  """The `member` protocol applied to `member_split`'s training rows only (for tuning).

  The evaluation query rows and held-out members of the outer split are removed
  first, so nothing chosen on this split has seen them.
  """
  inner = member_training_frame(frame, query_fraction, held_out_fraction, seed)
  return member_split(inner, spec, query_fraction=query_fraction,
                      held_out_fraction=held_out_fraction, seed=seed, **kwargs)


def truncate_support(tasks: Tasks, n: int) -> Tasks:
  """Keeps each task's latest `n` support interactions (n = 0: all cold start).

  Support slots stay left-aligned and chronological; the support width
  becomes `max(1, min(n, old width))`.
  """
  if int(n) < 0:
    raise ValueError(f"support size n must be >= 0, got {n}")
  n = int(n)
  sizes = tasks.support_sizes
  kept = np.minimum(sizes, n)
  width = max(1, min(n, tasks.arrays[F.side_key(F.SUPPORT, F.MASK)].shape[1]))
  slots = np.arange(width)
  valid = slots[None, :] < kept[:, None]
  source = np.where(valid, (sizes - kept)[:, None] + slots[None, :], 0)
  arrays = dict(tasks.arrays)
  for name in F.INTERACTION_KEYS:
    key = F.side_key(F.SUPPORT, name)
    values = np.take_along_axis(
        tasks.arrays[key], source.reshape(source.shape + (1,) * (tasks.arrays[key].ndim - 2)),
        axis=1)
    values = np.where(valid.reshape(valid.shape + (1,) * (values.ndim - 2)), values, 0)
    arrays[key] = values.astype(tasks.arrays[key].dtype, copy=False)
  return dataclasses.replace(tasks, arrays=arrays, support_sizes=kept.astype(np.int64))
