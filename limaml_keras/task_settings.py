"""How interactions become periods and MAML tasks: the one place of these settings.

TF-free and numpy-free at import (the CLI reads the defaults cheaply). TaskGen,
the Trainer's evaluation tasks, the meta-embedding job, `limaml embeddings`,
the refresh job and the offline evaluation all read `TaskSettings` and
`EVAL_FRACTION`; nothing else writes these defaults.

* The **evaluation period** is the latest `EVAL_FRACTION` of interactions
  (`cutoff_time`); everything learnt comes from the training period before it.
* **Training tasks** (`limaml_keras.tasks.training_tasks`): each member's
  time-ordered training-period history is cut into consecutive windows of
  `window` interactions. With `task_history=0` a window's earlier
  `support_fraction` is support, the rest query; with `task_history=h > 0`
  the whole window is the query of a *history task* whose support is the
  member's h interactions just before it. Either way every training
  interaction is a training target exactly once.
* **Adaptation support** (evaluation tasks, embeddings, serving): a member's
  latest `max_support` interactions; evaluation tasks score the earliest
  `max_query` evaluation-period interactions (None: all of them).
"""

import dataclasses
import math
import numbers
from typing import Optional

#: Share of interactions, the latest in time, that form the evaluation period.
EVAL_FRACTION = 0.2


def _is_whole(value) -> bool:
  return not isinstance(value, bool) and isinstance(value, numbers.Integral)


def window_support_size(window: int, support_fraction: float) -> int:
  """Support interactions of a full window: `min(floor(f * window), window - 1)`."""
  return min(int(math.floor(support_fraction * window)), window - 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskSettings:
  """Support/query caps, windowing and minimum interactions (module docstring).

  Attributes:
    window: training-period interactions per training task (>= 2).
    support_fraction: share of a window (or of a member's interactions) in
      support, in (0, 1).
    max_support: support cap of adaptation: the member's latest interactions
      (>= 1); the padded support length of evaluation task records
      (training records are padded to a full window's sides).
    max_query: query cap of evaluation tasks, the earliest interactions
      (>= 1); the padded query length of evaluation task records.
    min_interactions: members with fewer training-period interactions get
      no training task (1: a member with one interaction is a cold-start
      task, so no interaction is left out).
    task_history: 0 splits each window into support and query; h > 0 makes
      history tasks (module docstring): support sizes range from 0 (a
      member's first window) to h, as they do at adaptation, and support
      rows repeat (they are earlier windows' queries), so plain models
      train on the query side only (`GlobalModel(fit_support=False)`).
  """
  window: int = 40
  support_fraction: float = 0.5
  max_support: int = 20
  max_query: int = 20
  min_interactions: int = 1
  task_history: int = 0

  def __post_init__(self):
    for name, minimum in (("window", 2), ("max_support", 1), ("max_query", 1),
                          ("min_interactions", 1), ("task_history", 0)):
      value = getattr(self, name)
      if not _is_whole(value) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if isinstance(self.support_fraction, bool) or not 0.0 < self.support_fraction < 1.0:
      raise ValueError(f"support_fraction must be in (0, 1), got {self.support_fraction!r}")

  def replace(self, **changes) -> "TaskSettings":
    """A copy with `changes` (validated)."""
    return dataclasses.replace(self, **changes)

  def largest_training_support(self) -> int:
    """The most support interactions a training task can have.

    `task_history` for history tasks, otherwise the support part of a full
    window (`window_support_size`).
    """
    if self.task_history > 0:
      return self.task_history
    return window_support_size(self.window, self.support_fraction)


#: The defaults, for callers that need one value (CLI flags, component parameters).
DEFAULTS = TaskSettings()


def cutoff_time(timestamps, eval_fraction: Optional[float] = None) -> int:
  """The first second of the evaluation period.

  Interactions at or after the cutoff (about the latest `eval_fraction` of
  them; ties stay together) form the evaluation period.

  Args:
    timestamps: interaction times (Unix seconds).
    eval_fraction: share of interactions in the evaluation period, in (0, 1)
      (default `EVAL_FRACTION`).

  Returns:
    The cutoff: the timestamp at position `floor(n * (1 - eval_fraction))` of
    the sorted times (clamped so both periods hold an interaction).

  Raises:
    ValueError: when `eval_fraction` is out of (0, 1) or either period would
      be empty.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top  (the CLI reads the defaults without it)
  eval_fraction = EVAL_FRACTION if eval_fraction is None else eval_fraction
  if isinstance(eval_fraction, bool) or not 0.0 < eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")
  ordered = np.sort(np.asarray(timestamps, np.int64))
  if ordered.size < 2:
    raise ValueError(f"cannot split {ordered.size} interaction(s) into two periods")
  position = min(max(int(np.floor(ordered.size * (1.0 - eval_fraction))), 1), ordered.size - 1)
  cutoff = int(ordered[position])
  if cutoff <= ordered[0]:
    raise ValueError("cannot split by time: the training period would be empty (no "
                     "interaction before the cutoff: the training period is empty when too "
                     "many interactions share the earliest timestamps)")
  return cutoff
