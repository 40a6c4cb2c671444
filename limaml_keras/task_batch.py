"""Task batches: their checks, and the support-side operations every model uses.

A task batch is a dict of `[T, ...]` tensors, one row per task (member), in
the layout of `limaml_keras.tensor_layout`: member keys, then per side
(support, query) `[T, L, ...]` interaction keys and a 0/1 mask.
"""

import dataclasses
import itertools
from typing import Dict, Optional, Sequence

import tensorflow as tf

from limaml_keras import tensor_layout as F

SIDES = (F.SUPPORT, F.QUERY)
# Expected rank and dtype kind ("int" or "float") of every task-batch key.
_TASK_RANKS = {F.MEMBER_ID: (1, "int"), F.MEMBER_FEATURES: (2, "float")}
_SIDE_RANKS = {F.ITEM_ID: (2, "int"), F.ITEM_FEATURES: (3, "float"),
               F.CONTEXT_FEATURES: (3, "float"), F.LABEL: (2, "float"), F.MASK: (2, "float")}
for _side, (_name, _spec) in itertools.product(SIDES, _SIDE_RANKS.items()):
  _TASK_RANKS[F.side_key(_side, _name)] = _spec


def _dtype_kind(dtype: tf.DType) -> str:
  if dtype.is_integer:
    return "int"
  if dtype.is_floating:
    return "float"
  return dtype.name


def validate_task_batch(batch: Dict[str, tf.Tensor], require_member_id: bool = False) -> None:
  """Checks keys, ranks, dtypes and matching sizes of a task batch.

  Runs on static shapes, so it costs nothing per step inside `tf.function`.

  Args:
    batch: a task batch (see `limaml_keras.tensor_layout`).
    require_member_id: whether `member_id` must be present.

  Raises:
    ValueError: naming the offending key and what was expected.
  """
  if not isinstance(batch, dict):
    raise ValueError(f"A task batch must be a dict of tensors, got {type(batch).__name__}.")
  required = [k for k in _TASK_RANKS if k != F.MEMBER_ID or require_member_id]
  missing = [k for k in required if k not in batch]
  if missing:
    raise ValueError(f"Task batch is missing keys {missing}; it has {sorted(batch)}.")
  for key in required:
    rank, kind = _TASK_RANKS[key]
    value = batch[key]
    shape = value.shape
    if shape.rank is not None and shape.rank != rank:
      raise ValueError(f"Task batch key {key!r} must have rank {rank}, got shape {shape}.")
    if _dtype_kind(value.dtype) != kind and not (kind == "float" and value.dtype.is_integer):
      raise ValueError(f"Task batch key {key!r} must be {kind}, got dtype {value.dtype.name}.")
  _check_same_dims(batch, required)
  if batch[F.MEMBER_FEATURES].shape[0] == 0:
    raise ValueError("Task batch is empty: it holds 0 tasks.")


def _check_same_dims(batch, keys) -> None:
  """Every key shares T; every side's keys share its length; feature dims match across sides."""
  num_tasks = {k: batch[k].shape[0] for k in keys}
  for side in SIDES:
    lengths = {k: batch[F.side_key(side, name)].shape[1] for k, name in
               ((F.side_key(side, n), n) for n in _SIDE_RANKS)}
    _assert_equal_dims(lengths, f"{side} length")
  _assert_equal_dims(num_tasks, "number of tasks")
  for name in (F.ITEM_FEATURES, F.CONTEXT_FEATURES):
    _assert_equal_dims({F.side_key(s, name): batch[F.side_key(s, name)].shape[-1] for s in SIDES},
                       f"{name} size")


def _assert_equal_dims(dims: Dict[str, Optional[int]], what: str) -> None:
  known = {k: d for k, d in dims.items() if d is not None}
  if len(set(known.values())) > 1:
    raise ValueError(f"Task batch keys disagree on the {what}: {known}.")


@dataclasses.dataclass(frozen=True)
class FeatureDims:
  """Feature sizes a model is built for (a plain value: never tracked by TF)."""
  member_dim: int
  item_dim: int
  context_dim: int

  def as_dict(self) -> Dict[str, int]:
    return dataclasses.asdict(self)


def support_history(batch, count_cap: Optional[float] = None) -> tf.Tensor:
  """Summary `[T, 2 * Di + 2]` of each task's support set (for the Meta Block).

  Masked mean item features of the positive and of the negative support
  interactions, then `log1p` of their counts (`labelled_support_pool`,
  `count_cap` included). Padding has no effect; an empty support gives zeros.
  """
  return labelled_support_pool(batch, batch[F.side_key(F.SUPPORT, F.ITEM_FEATURES)], count_cap)


def labelled_support_pool(batch, values, count_cap: Optional[float] = None) -> tf.Tensor:
  """Masked means of `values` `[T, L, D]` over positive and over negative support, and log-counts.

  Returns `[T, 2 * D + 2]`: mean over the positive support interactions, mean
  over the negative ones, `log1p` of both counts. Padding has no effect; an
  empty support gives zeros. With D = 0 no 0-width product is ever formed.
  `count_cap`: the counts are clipped to it before `log1p` (the means still
  read every interaction); None: not clipped.
  """
  label = tf.cast(batch[F.side_key(F.SUPPORT, F.LABEL)], tf.float32)
  mask = tf.cast(batch[F.side_key(F.SUPPORT, F.MASK)], tf.float32)
  values = tf.cast(values, tf.float32)
  width = values.shape[-1]
  values = tf.where(mask[..., tf.newaxis] > 0, values, 0.0)
  parts, counts = [], []
  for weight in (label * mask, (1.0 - label) * mask):
    count = tf.reduce_sum(weight, axis=1, keepdims=True)
    if width != 0:
      parts.append(tf.einsum("tl,tld->td", weight, values) / tf.maximum(count, 1.0))
    counts.append(tf.math.log1p(count if count_cap is None else tf.minimum(count, count_cap)))
  return tf.concat(parts + counts, axis=-1)


def sample_support_sizes(batch, sizes: Sequence[int], seed=None):
  """Keeps each task's latest k support interactions, k drawn uniformly from `sizes`.

  Support slots are left-aligned and chronological, so the latest k real
  interactions are the slots `[n - k, n)` of a task with n. Only the support
  mask changes (masked slots have no effect anywhere). Empty `sizes`: the
  batch is returned unchanged.
  """
  if not sizes:
    return batch
  key = F.side_key(F.SUPPORT, F.MASK)
  mask = tf.cast(batch[key], tf.float32)
  real = tf.reduce_sum(mask, axis=1, keepdims=True)
  choice = tf.random.uniform(tf.shape(mask)[:1], 0, len(sizes), dtype=tf.int32, seed=seed)
  keep = tf.gather(tf.constant(list(sizes), tf.float32), choice)[:, tf.newaxis]
  slot = tf.cast(tf.range(tf.shape(mask)[1]), tf.float32)[tf.newaxis]
  out = dict(batch)
  out[key] = mask * tf.cast(slot >= real - keep, tf.float32)
  return out


def drop_member_ids(batch, rate: float, seed=None):
  """Replaces each task's member id by the unknown id 0 with probability `rate`.

  Training-time dropout of the member-ID embedding: a task whose id is
  dropped is scored as a member the model does not know (row 0), from the
  member's features and support alone. `rate` 0 or a batch without
  `member_id`: the batch is returned unchanged.
  """
  if not rate or F.MEMBER_ID not in batch:
    return batch
  member_id = batch[F.MEMBER_ID]
  keep = tf.random.uniform(tf.shape(member_id), seed=seed) >= rate
  out = dict(batch)
  out[F.MEMBER_ID] = tf.where(keep, member_id, tf.zeros_like(member_id))
  return out


def as_new_members(batch):
  """The batch as new members see it: no support (mask 0) and the unknown member id 0.

  The member features and the query side are unchanged.
  """
  out = dict(batch)
  key = F.side_key(F.SUPPORT, F.MASK)
  out[key] = tf.zeros_like(batch[key])
  if F.MEMBER_ID in batch:
    out[F.MEMBER_ID] = tf.zeros_like(batch[F.MEMBER_ID])
  return out


def support_only_batch(task_batch) -> Dict[str, tf.Tensor]:
  """Converts a task batch to tensors, filling absent query keys with empty ones."""
  if not isinstance(task_batch, dict):
    raise ValueError(f"A task batch must be a dict, got {type(task_batch).__name__}.")
  batch = {}
  for key, value in task_batch.items():
    try:
      batch[key] = tf.convert_to_tensor(value)
    except (ValueError, TypeError) as e:
      raise ValueError(f"Task batch key {key!r} is not a numeric array: {e}") from None
  if F.MEMBER_FEATURES in batch:
    batch.setdefault(F.MEMBER_ID, tf.zeros(tf.shape(batch[F.MEMBER_FEATURES])[:1], tf.int64))
  return with_empty_query(batch)


def with_empty_query(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Adds zero-length query tensors where a batch has only its support side.

  Graph-friendly: lets a support-only batch (what adaptation and the meta
  embedding job have) pass as a full task batch.
  """
  out = dict(batch)
  for name in F.INTERACTION_KEYS:
    support = batch.get(F.side_key(F.SUPPORT, name))
    query_key = F.side_key(F.QUERY, name)
    if query_key not in out and support is not None:
      shape = tf.concat([tf.shape(support)[:1], [0], tf.shape(support)[2:]], axis=0)
      out[query_key] = tf.zeros(shape, support.dtype)
  return out
