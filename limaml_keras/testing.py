"""Small seeded task batches for tests, examples and benchmarks."""

from typing import Dict

import numpy as np

from limaml_keras import tensor_layout as F


def random_task_batch(num_tasks: int = 4,
                      support: int = 5,
                      query: int = 3,
                      member_dim: int = 3,
                      item_dim: int = 4,
                      context_dim: int = 2,
                      num_items: int = 10,
                      seed: int = 0) -> Dict[str, np.ndarray]:
  """Returns a fully-populated (mask = 1 everywhere) random task batch.

  Args:
    num_tasks: T.
    support: S, support interactions per task.
    query: Q, query interactions per task.
    member_dim: Dm.
    item_dim: Di.
    context_dim: Dc.
    num_items: item ids are drawn from [1, num_items).
    seed: numpy seed.

  Returns:
    A dict in the task-batch layout of `limaml_keras.tensor_layout`.
  """
  rng = np.random.default_rng(seed)
  batch = {F.MEMBER_ID: np.arange(1, num_tasks + 1, dtype=np.int64),
           F.MEMBER_FEATURES: rng.normal(size=(num_tasks, member_dim)).astype(np.float32)}
  for side, length in ((F.SUPPORT, support), (F.QUERY, query)):
    shape = (num_tasks, length)
    batch.update({
        F.side_key(side, F.ITEM_ID): rng.integers(1, max(num_items, 2), shape).astype(np.int64),
        F.side_key(side, F.ITEM_FEATURES): rng.normal(size=shape + (item_dim,)).astype(np.float32),
        F.side_key(side, F.CONTEXT_FEATURES):
            rng.normal(size=shape + (context_dim,)).astype(np.float32),
        F.side_key(side, F.LABEL): rng.integers(0, 2, shape).astype(np.float32),
        F.side_key(side, F.MASK): np.ones(shape, np.float32),
    })
  return batch


def pad_task_batch(batch: Dict[str, np.ndarray], extra: int, fill: float = 0.0
                   ) -> Dict[str, np.ndarray]:
  """Appends `extra` padded (mask = 0) interactions to both sides.

  Padded slots hold `fill` (labels 0/1 alternate) so tests can check that
  padding has no effect whatever it contains.
  """
  padded = dict(batch)
  for side in (F.SUPPORT, F.QUERY):
    for name in F.INTERACTION_KEYS:
      key = F.side_key(side, name)
      value = batch[key]
      pad_shape = (value.shape[0], extra) + value.shape[2:]
      if name == F.MASK:
        pad = np.zeros(pad_shape, value.dtype)
      elif name == F.LABEL:
        pad = (np.indices(pad_shape).sum(axis=0) % 2).astype(value.dtype)
      else:
        pad = np.full(pad_shape, fill, value.dtype)
      padded[key] = np.concatenate([value, pad], axis=1)
  return padded
