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
from limaml_keras import tasks as tasks_lib
from limaml_keras import task_settings
from limaml_keras.preprocessing import Preprocessor
from limaml_keras.tasks import Tasks, build_tasks

#: Share of interactions in the query period (the pipeline's evaluation period).
DEFAULT_QUERY_FRACTION = task_settings.EVAL_FRACTION
DEFAULT_MAX_SUPPORT = task_settings.DEFAULTS.max_support
DEFAULT_WINDOW = task_settings.DEFAULTS.window


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


def training_tasks(train: Dict[str, np.ndarray], window: int = DEFAULT_WINDOW,
                   support_fraction: float = task_settings.DEFAULTS.support_fraction) -> Tasks:
  """Meta-training tasks from training-period interactions: the pipeline's recipe.

  `limaml_keras.tasks.training_tasks` (what TaskGen runs per member): each
  member's time-ordered history is cut into consecutive windows of `window`
  interactions; each window is one task whose earlier `support_fraction` is
  support and the rest query. Every training interaction lands in exactly
  one task, so plain baselines trained on these tasks see all data.

  Args:
    train: per-interaction arrays (`Split.train`).
    window: interactions per task.
    support_fraction: support share of each window.

  Returns:
    The tasks.
  """
  settings = task_settings.DEFAULTS.replace(window=window, support_fraction=support_fraction)
  return tasks_lib.training_tasks(train, settings)
