"""MAML tasks: per-member, time-ordered support/query splits, padded and masked.

`build_tasks` turns per-interaction arrays (what
`limaml_keras.preprocessing.Preprocessor.transform` returns) into a task batch
with the layout of `limaml_keras.tensor_layout`: one task per member, its
interactions ordered by timestamp (ties keep input order), the earlier ones in
support and the later ones in query.

Split rules, and the fate of members with too few interactions:

* `support_fraction=f`: a member with n interactions gets
  `min(floor(f * n), n - 1)` support interactions (so at least one query);
  members with `n < min_interactions` are dropped
  (`dropped_members["too_few_interactions"]`). With `min_interactions=1` a
  member with one interaction becomes a cold-start task.
* `cutoff_time=c`: support = interactions with `timestamp < c`, query =
  `timestamp >= c`. Members with no query interaction are dropped
  (`dropped_members["no_query"]`: nothing to score); members with no support
  interaction are kept as cold-start tasks (support mask all zero).

Then support is capped to its latest `max_support` interactions and query to
its earliest `max_query`. Memory is linear in the interactions (one sort, no
[n, n] arrays) plus the padded [T, width] task arrays; when those would
exceed `max_padded_bytes` (a very active member and no caps), `build_tasks`
raises a ValueError naming the member instead of running out of memory.
Sides are padded to the longest task (at least one slot, so no tensor is
empty); padded slots have mask 0 and all-zero values.
A task's `member_features` and `member_id` are taken from the member's latest
support interaction (what is known when adapting), or from the first query
interaction for a cold-start task.
"""

import dataclasses
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras.task_settings import DEFAULTS, TaskSettings, window_support_size
from limaml_keras.tensor_layout import MEMBER_KEY, TIMESTAMP

#: Keys `build_tasks` requires (a `MEMBER_KEY` entry is optional).
REQUIRED_KEYS = (tensor_layout.MEMBER_ID, tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_ID,
                 tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES, tensor_layout.LABEL,
                 TIMESTAMP)
_MATRIX_KEYS = (tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES)
_DTYPES = {tensor_layout.MEMBER_ID: np.int64, tensor_layout.ITEM_ID: np.int64,
           tensor_layout.MEMBER_FEATURES: np.float32, tensor_layout.ITEM_FEATURES: np.float32,
           tensor_layout.CONTEXT_FEATURES: np.float32, tensor_layout.LABEL: np.float32,
           tensor_layout.MASK: np.float32}
_SIDE_VALUE_KEYS = (tensor_layout.ITEM_ID, tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES,
                    tensor_layout.LABEL)
#: Default bound of the padded support + query arrays of `build_tasks`.
DEFAULT_MAX_PADDED_BYTES = 2 * 2**30


@dataclasses.dataclass(frozen=True)
class Tasks:
  """A task batch of T tasks, as numpy arrays, with bookkeeping.

  Attributes:
    arrays: the task batch, keyed by `tensor_layout.task_keys()` (shapes and dtypes
      as `limaml_keras.tensor_layout` documents).
    member_ids: [T] the key each task was grouped by (the raw member id when
      the input had `member_key`, else the member index), sorted.
    support_sizes: [T] int64 real support interactions per task (after caps).
    query_sizes: [T] int64 real query interactions per task (after caps).
    dropped_members: members dropped by reason, e.g. `{"no_query": 3}`.
    capped_interactions: interactions removed by the caps,
      `{"support": n, "query": m}`.
  """
  arrays: Dict[str, np.ndarray]
  member_ids: np.ndarray
  support_sizes: np.ndarray
  query_sizes: np.ndarray
  dropped_members: Dict[str, int]
  capped_interactions: Dict[str, int]

  def __len__(self) -> int:
    return int(self.member_ids.shape[0])

  @property
  def cold_start(self) -> np.ndarray:
    """[T] bool, True for tasks without support."""
    return self.support_sizes == 0

  def select(self, index) -> "Tasks":
    """The tasks at `index` (a boolean mask or integer indices), same counters."""
    return dataclasses.replace(
        self,
        arrays={k: v[index] for k, v in self.arrays.items()},
        member_ids=self.member_ids[index],
        support_sizes=self.support_sizes[index],
        query_sizes=self.query_sizes[index])

  def dataset(self, batch_size: int, shuffle: bool = False, seed: Optional[int] = None,
              drop_remainder: bool = False) -> tf.data.Dataset:
    """A `tf.data.Dataset` of task-batch dicts of up to `batch_size` tasks.

    The dataset yields only the dict (labels are inside it), as the LiMAML
    Keras model's `fit` expects.

    Args:
      batch_size: tasks per batch (>= 1).
      shuffle: reshuffle the tasks every epoch.
      seed: shuffle seed.
      drop_remainder: drop the last, smaller batch.

    Returns:
      The dataset.
    """
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset = tf.data.Dataset.from_tensor_slices(dict(self.arrays))
    if shuffle:
      dataset = dataset.shuffle(max(len(self), 1), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(
        tf.data.AUTOTUNE)


def _check_arguments(support_fraction, cutoff_time, max_support, max_query, min_interactions):
  if support_fraction is not None and cutoff_time is not None:
    raise ValueError("pass support_fraction or cutoff_time, not both")
  if support_fraction is not None and not 0.0 < support_fraction < 1.0:
    raise ValueError(f"support_fraction must be in (0, 1), got {support_fraction!r}")
  if max_support is not None and max_support < 0:
    raise ValueError(f"max_support must be >= 0 or None, got {max_support!r}")
  if max_query is not None and max_query < 1:
    raise ValueError(f"max_query must be >= 1 or None, got {max_query!r}")
  if min_interactions < 1:
    raise ValueError(f"min_interactions must be >= 1, got {min_interactions!r}")


def _checked_inputs(data: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Returns the required arrays (and `member_key`) after validating them."""
  if not isinstance(data, Mapping):
    raise ValueError(f"expected a dict of per-interaction arrays, got {type(data).__name__}")
  missing = [k for k in REQUIRED_KEYS if k not in data]
  if missing:
    raise ValueError(f"missing keys: {missing}")
  keys = REQUIRED_KEYS + ((MEMBER_KEY,) if MEMBER_KEY in data else ())
  arrays = {k: np.asarray(data[k]) for k in keys}
  num_rows = arrays[tensor_layout.MEMBER_ID].shape[0] if arrays[tensor_layout.MEMBER_ID].ndim else 0
  if num_rows == 0:
    raise ValueError("empty input: no interactions")
  for key, value in arrays.items():
    expected_ndim = 2 if key in _MATRIX_KEYS else 1
    if value.ndim != expected_ndim:
      raise ValueError(f"{key!r} must be {expected_ndim}-D, got shape {value.shape}")
    if value.shape[0] != num_rows:
      raise ValueError(f"mismatched lengths: {key!r} has {value.shape[0]} rows, "
                       f"{tensor_layout.MEMBER_ID!r} has {num_rows}")
  for key in (tensor_layout.LABEL, TIMESTAMP):
    if arrays[key].dtype.kind not in "iub":
      bad = ~np.isfinite(arrays[key].astype(np.float64))
      if bad.any():
        raise ValueError(f"{key!r} has NaN or infinite values in {int(bad.sum())} row(s), "
                         f"e.g. row {int(np.flatnonzero(bad)[0])}")
  if MEMBER_KEY not in arrays and (arrays[tensor_layout.MEMBER_ID] == 0).any():
    raise ValueError(f"{tensor_layout.MEMBER_ID!r} holds 0 (unknown member), which cannot be "
                     f"grouped into tasks; pass the raw ids as {MEMBER_KEY!r}")
  return arrays


@dataclasses.dataclass(frozen=True)
class _Groups:
  """Interactions sorted by (member, time) and each member's contiguous range."""
  order: np.ndarray  # [N] row order
  keys: np.ndarray  # [U] sorted member keys
  starts: np.ndarray  # [U] first sorted position of each member
  counts: np.ndarray  # [U] interactions of each member


def _group(member_keys: np.ndarray, timestamp: np.ndarray) -> _Groups:
  codes, keys = pd.factorize(member_keys, sort=True)
  order = np.lexsort((timestamp, codes))  # lexsort is stable
  counts = np.bincount(codes, minlength=len(keys)).astype(np.int64)
  starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  return _Groups(order=order, keys=np.asarray(keys), starts=starts, counts=counts)


def fraction_support_size(counts, support_fraction: float) -> np.ndarray:
  """Support sizes of members with `counts` interactions: `min(floor(f * n), n - 1)`."""
  counts = np.asarray(counts, np.int64)
  return np.minimum(np.floor(support_fraction * counts).astype(np.int64), counts - 1)


def latest_first(order_keys: np.ndarray, max_support: int) -> np.ndarray:
  """Positions of the latest `max_support` items by `order_keys`, in time order.

  The one "latest `max_support`" rule of adaptation support: `build_tasks`'
  support cap, TaskGen's evaluation tasks and the meta-embedding job's
  support selection all keep these interactions.

  Args:
    order_keys: [n] sortable keys, ascending in time (ties already broken).
    max_support: how many to keep (>= 0).

  Returns:
    int64 positions into `order_keys`, oldest first.
  """
  order = np.argsort(np.asarray(order_keys), kind="stable")
  return order[max(len(order) - max_support, 0):].astype(np.int64)


def _check_padded_size(groups: _Groups, keep: np.ndarray, support: np.ndarray, sorted_values,
                       max_support: Optional[int], max_query: Optional[int],
                       max_padded_bytes: int) -> None:
  """Raises before padding would allocate more than `max_padded_bytes`."""
  counts = groups.counts[keep]
  widths = [max(1, int(_cap(sizes, cap).max(initial=0)))
            for sizes, cap in ((support[keep], max_support), (counts - support[keep], max_query))]
  slot_bytes = 4 * (3 + sum(sorted_values[k].shape[1] for k in _MATRIX_KEYS[1:]))
  needed = int(keep.sum()) * sum(widths) * slot_bytes
  if needed > max_padded_bytes:
    largest = int(np.argmax(groups.counts))
    raise ValueError(
        f"padding {int(keep.sum())} tasks to {widths[0]} support and {widths[1]} query slots "
        f"would take {needed / 2**30:.1f} GiB (more than max_padded_bytes="
        f"{max_padded_bytes}); member {groups.keys[largest]!r} has "
        f"{int(groups.counts[largest])} interactions: pass max_support and max_query to cap "
        f"what a task keeps")


def _split_sizes(groups: _Groups, sorted_time: np.ndarray, support_fraction, cutoff_time,
                 min_interactions):
  """Returns (support sizes [U], keep [U] bool, dropped counter) before caps."""
  counts = groups.counts
  if cutoff_time is None:
    support = fraction_support_size(counts, support_fraction)
    keep = counts >= min_interactions
    return support, keep, {"too_few_interactions": int((~keep).sum())}
  before = (sorted_time < cutoff_time).astype(np.int64)
  support = np.add.reduceat(before, groups.starts)
  keep = support < counts
  return support, keep, {"no_query": int((~keep).sum())}


def _cap(sizes: np.ndarray, cap: Optional[int]) -> np.ndarray:
  return sizes if cap is None else np.minimum(sizes, cap)


def _pad(values: np.ndarray, begin: np.ndarray, length: np.ndarray, width: int):
  """Gathers values[begin[t] + j] for j < length[t] into [T, width, ...], zero-padded."""
  slots = np.arange(width)
  mask = slots[None, :] < length[:, None]
  gathered = values[np.where(mask, begin[:, None] + slots[None, :], 0)]
  gathered[~mask] = 0
  return gathered, mask


def _side_arrays(sorted_values, side, begin, length):
  """The five task-batch entries of `side` ("support" or "query")."""
  width = max(1, int(length.max(initial=0)))
  out = {}
  for name in _SIDE_VALUE_KEYS:
    out[tensor_layout.side_key(side, name)], mask = _pad(sorted_values[name], begin, length, width)
  out[tensor_layout.side_key(side, tensor_layout.MASK)] = mask
  return out


def build_tasks(data: Mapping[str, np.ndarray],
                support_fraction: Optional[float] = None,
                cutoff_time: Optional[int] = None,
                max_support: Optional[int] = DEFAULTS.max_support,
                max_query: Optional[int] = None,
                min_interactions: int = DEFAULTS.min_interactions,
                max_padded_bytes: int = DEFAULT_MAX_PADDED_BYTES) -> Tasks:
  """Groups interactions into per-member MAML tasks (see the module docstring).

  Args:
    data: per-interaction arrays with keys `REQUIRED_KEYS` and, optionally,
      `member_key` (raw member ids; tasks are grouped by it when present,
      otherwise by `member_id`, which must then hold no unknown 0).
    support_fraction: share of each member's interactions that go to support,
      in (0, 1). When neither split is given, `TaskSettings.support_fraction`.
    cutoff_time: split at this Unix second instead.
    max_support: keep at most the latest `max_support` support interactions
      (0 makes every task cold-start; None: no cap).
    max_query: keep at most the earliest `max_query` query interactions
      (None: no cap; the query side is padded to the longest task).
    min_interactions: with `support_fraction`, members with fewer
      interactions are dropped.
    max_padded_bytes: refuse (ValueError) to build padded task arrays larger
      than this; one very active member would otherwise widen every task.

  Returns:
    `Tasks`, ordered by member key.

  Raises:
    ValueError: on invalid inputs or arguments, or when no task is left.
  """
  _check_arguments(support_fraction, cutoff_time, max_support, max_query, min_interactions)
  if support_fraction is None and cutoff_time is None:
    support_fraction = DEFAULTS.support_fraction
  arrays = _checked_inputs(data)
  groups = _group(arrays.get(MEMBER_KEY, arrays[tensor_layout.MEMBER_ID]), arrays[TIMESTAMP])
  sorted_values = {k: v[groups.order] for k, v in arrays.items()}
  support, keep, dropped = _split_sizes(groups, sorted_values[TIMESTAMP], support_fraction,
                                        cutoff_time, min_interactions)
  if not keep.any():
    raise ValueError(f"no task left: all {len(keep)} members were dropped ({dropped})")
  _check_padded_size(groups, keep, support, sorted_values, max_support, max_query,
                     max_padded_bytes)
  starts, counts, support = groups.starts[keep], groups.counts[keep], support[keep]
  query = counts - support
  support_kept, query_kept = _cap(support, max_support), _cap(query, max_query)
  task_batch = {}
  task_batch.update(_side_arrays(sorted_values, tensor_layout.SUPPORT,
                                 starts + support - support_kept, support_kept))
  task_batch.update(_side_arrays(sorted_values, tensor_layout.QUERY, starts + support, query_kept))
  member_row = starts + support - (support > 0)
  task_batch[tensor_layout.MEMBER_ID] = sorted_values[tensor_layout.MEMBER_ID][member_row]
  task_batch[tensor_layout.MEMBER_FEATURES] = sorted_values[tensor_layout.MEMBER_FEATURES][member_row]
  return Tasks(
      arrays={k: _as_documented_dtype(k, task_batch[k]) for k in tensor_layout.task_keys()},
      member_ids=groups.keys[keep],
      support_sizes=support_kept.astype(np.int64),
      query_sizes=query_kept.astype(np.int64),
      dropped_members=dropped,
      capped_interactions={tensor_layout.SUPPORT: int((support - support_kept).sum()),
                           tensor_layout.QUERY: int((query - query_kept).sum())})


def _as_documented_dtype(key: str, value: np.ndarray) -> np.ndarray:
  name = key.split("_", 1)[1] if key.startswith((tensor_layout.SUPPORT, tensor_layout.QUERY)) else key
  return value.astype(_DTYPES[name], copy=False)


def flatten_interactions(tasks: Tasks,
                         sides: Sequence[str] = (tensor_layout.SUPPORT, tensor_layout.QUERY),
                         include_task_index: bool = False) -> Dict[str, np.ndarray]:
  """The real (mask = 1) interactions of `sides` as a flat interaction batch.

  Used to train and score non-meta baselines on exactly the data the meta
  model sees. Rows are ordered by task, then side (in `sides` order), then
  time.

  Args:
    tasks: the tasks.
    sides: any of "support" and "query", without repeats.
    include_task_index: also return `task_index` [N], the task of each row.

  Returns:
    Dict with `member_id` [N], `member_features` [N, Dm] (the task's),
    `item_id` [N], `item_features` [N, Di], `context_features` [N, Dc] and
    `label` [N].
  """
  sides = tuple(sides)
  if not sides or len(set(sides)) != len(sides) or not set(sides) <= {
      tensor_layout.SUPPORT, tensor_layout.QUERY}:
    raise ValueError(f"sides must be distinct values of ('support', 'query'), got {sides!r}")
  task_parts = []
  value_parts = {name: [] for name in _SIDE_VALUE_KEYS}
  for side in sides:
    t, j = np.nonzero(tasks.arrays[tensor_layout.side_key(side, tensor_layout.MASK)] > 0)
    task_parts.append(t)
    for name in _SIDE_VALUE_KEYS:
      value_parts[name].append(tasks.arrays[tensor_layout.side_key(side, name)][t, j])
  task_index = np.concatenate(task_parts)
  order = np.argsort(task_index, kind="stable")  # side-major -> task-major
  task_index = task_index[order]
  out = {tensor_layout.MEMBER_ID: tasks.arrays[tensor_layout.MEMBER_ID][task_index],
         tensor_layout.MEMBER_FEATURES: tasks.arrays[tensor_layout.MEMBER_FEATURES][task_index]}
  out.update({name: np.concatenate(parts)[order] for name, parts in value_parts.items()})
  if include_task_index:
    out["task_index"] = task_index
  return out


def _member_ranks(member_keys: np.ndarray, timestamps: np.ndarray):
  """`(order, rank, starts)`: member-then-time order (ties keep input order),
  each sorted row's rank in its member's history, and where members start."""
  keys = np.asarray(member_keys)
  order = np.lexsort((np.arange(len(keys)), np.asarray(timestamps), keys))
  sorted_keys = keys[order]
  starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
  rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
  return order, rank, starts


def _task_keys(member_keys: np.ndarray, window_index: np.ndarray) -> np.ndarray:
  return np.char.add(np.char.add(np.asarray(member_keys).astype(str), "#"),
                     np.asarray(window_index).astype(str))


def window_keys(member_keys: np.ndarray, timestamps: np.ndarray, window: int) -> np.ndarray:
  """`"<member>#<w>"` per interaction: `w` = its window in the member's time order.

  Each member's interactions, ordered by time (ties keep input order), are cut
  into consecutive windows of `window`; the last window may be shorter.
  """
  order, rank, _ = _member_ranks(member_keys, timestamps)
  chunk = np.empty(len(order), np.int64)
  chunk[order] = rank // window
  return _task_keys(member_keys, chunk)


def _history_tasks(data: Dict[str, np.ndarray], window: int, history: int) -> Tasks:
  """Each window of `window` interactions is the query of a task whose
  support is the member's `history` interactions just before it."""
  keys = np.asarray(data[MEMBER_KEY])
  order, rank, starts = _member_ranks(keys, data[TIMESTAMP])
  member_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
  first_of_window = np.flatnonzero(rank % window == 0)
  support_rows = first_of_window[:, None] + np.arange(-history, 0)[None, :]
  valid = support_rows >= member_start[first_of_window][:, None]
  support_rows, support_task = support_rows[valid], np.repeat(first_of_window, valid.sum(axis=1))
  query_task = first_of_window[np.searchsorted(first_of_window, np.arange(len(order)),
                                               side="right") - 1]
  positions = np.concatenate([support_rows, np.arange(len(order))])
  task_start = np.concatenate([support_task, query_task])
  is_query = np.r_[np.zeros(len(support_rows), bool), np.ones(len(order), bool)]
  rows = order[positions]
  tasks_input = {k: np.asarray(v)[rows] for k, v in data.items()}
  tasks_input[MEMBER_KEY] = _task_keys(keys[order][task_start], rank[task_start] // window)
  bound = len(positions) + 1  # Support before query, each in time order.
  tasks_input[TIMESTAMP] = positions + bound * is_query
  return build_tasks(tasks_input, cutoff_time=bound, max_support=None, max_query=None)


def training_tasks(data: Mapping[str, np.ndarray], settings: TaskSettings = DEFAULTS) -> Tasks:
  """The task recipe of training: windows over each member's history.

  Each member's time-ordered interactions (ties keep input order) are cut
  into consecutive windows of `settings.window` (`window_keys`), and each
  window makes one task:

  * `settings.task_history == 0`: the window's earlier
    `settings.support_fraction` is support and the rest query
    (`window_support_size`); sides are padded to a full window's sizes.
  * `settings.task_history == h > 0`: the whole window is the query of a
    *history task* whose support is the member's h interactions just before
    it (none for the member's first window: a cold-start task); sides are
    padded to h and `window`. Support sizes then range over 0..h, as they do
    at adaptation; support rows repeat, so plain models train on the query
    side only.

  Either way every interaction is a training target exactly once. Members
  with fewer than `settings.min_interactions` interactions are dropped; with
  the default 1 every interaction lands in a task (a window of one
  interaction is a cold-start task). Nothing is capped away and no support
  size is sampled (the model may sample: `ModelConfig.train_support_sizes`).

  The TFX TaskGen component calls this per member (its Beam DoFn) and the
  offline evaluation calls it on the whole training period: both train on
  the same tasks.

  Args:
    data: per-interaction arrays (`build_tasks`' input) with `member_key`.
    settings: `window`, `support_fraction`, `task_history` and
      `min_interactions`.

  Returns:
    The tasks, one per window; `member_ids` are `"<member>#<window>"`.
  """
  if MEMBER_KEY not in data:
    raise ValueError(f"training_tasks needs {MEMBER_KEY!r} (the raw member ids)")
  keys = np.asarray(data[MEMBER_KEY])
  counts = pd.Series(keys).value_counts()
  keep = np.isin(keys, counts.index[counts >= settings.min_interactions].to_numpy())
  if not keep.any():
    raise ValueError(f"no task left: every member has fewer than "
                     f"{settings.min_interactions} interactions")
  kept = {k: np.asarray(v)[keep] for k, v in data.items()}
  if settings.task_history:
    tasks = pad_sides(_history_tasks(kept, settings.window, settings.task_history),
                      settings.task_history, settings.window)
  else:
    kept[MEMBER_KEY] = window_keys(kept[MEMBER_KEY], kept[TIMESTAMP], settings.window)
    tasks = build_tasks(kept, support_fraction=settings.support_fraction, max_support=None,
                        max_query=None, min_interactions=1)
    support = window_support_size(settings.window, settings.support_fraction)
    tasks = pad_sides(tasks, support, settings.window - support)
  return dataclasses.replace(tasks, dropped_members={
      "too_few_interactions": int(len(counts) - (counts >= settings.min_interactions).sum())})


def pad_sides(tasks: Tasks, support_length: int, query_length: int) -> Tasks:
  """`tasks` with each side zero-padded (or cut) to exactly the given lengths."""
  arrays = dict(tasks.arrays)
  for side, length in ((tensor_layout.SUPPORT, support_length),
                       (tensor_layout.QUERY, query_length)):
    for name in tensor_layout.INTERACTION_KEYS:
      key = tensor_layout.side_key(side, name)
      value = arrays[key][:, :length]
      padded = np.zeros((value.shape[0], length) + value.shape[2:], value.dtype)
      padded[:, :value.shape[1]] = value
      arrays[key] = padded
  return dataclasses.replace(tasks, arrays=arrays)
