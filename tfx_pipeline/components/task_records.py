"""Task records: one padded `tf.train.Example` per task (member).

TaskGen writes them and the Trainer reads them back as task batches in the
layout of `limaml_keras.tensor_layout`. Every record of a split has the same
padded lengths, so all features are fixed-length::

    member_key                bytes  [1]        raw member id
    member_id                 int64  [1]
    member_features           float  [Dm]
    support_item_id           int64  [S]
    support_item_features     float  [S * Di]   row-major [S, Di]
    support_context_features  float  [S * Dc]
    support_label             float  [S]
    support_mask              float  [S]        1 = real interaction
    query_...                 same with Q
    support_size, query_size  int64  [1]        real interactions

`infer_format` reads the sizes back from the first record, so readers need
no side information.
"""

import dataclasses
from typing import Dict, List, Mapping, Sequence, Union

import numpy as np
import tensorflow as tf

from limaml_keras import tensor_layout

MEMBER_KEY = tensor_layout.MEMBER_KEY
SUPPORT_SIZE = "support_size"
QUERY_SIZE = "query_size"

_INT_KEYS = frozenset([tensor_layout.MEMBER_ID] + [
    tensor_layout.side_key(side, tensor_layout.ITEM_ID) for side in (tensor_layout.SUPPORT, tensor_layout.QUERY)])
_FILE_PATTERNS = Union[str, Sequence[str]]


@dataclasses.dataclass(frozen=True)
class TaskFormat:
  """Sizes of the task records of one split."""
  member_dim: int
  item_dim: int
  context_dim: int
  support_length: int
  query_length: int

  def shapes(self) -> Dict[str, List[int]]:
    """Per-task shape of every task-batch key (without the task axis)."""
    lengths = {tensor_layout.SUPPORT: self.support_length, tensor_layout.QUERY: self.query_length}
    out = {tensor_layout.MEMBER_ID: [], tensor_layout.MEMBER_FEATURES: [self.member_dim]}
    for side, length in lengths.items():
      out[tensor_layout.side_key(side, tensor_layout.ITEM_ID)] = [length]
      out[tensor_layout.side_key(side, tensor_layout.ITEM_FEATURES)] = [length, self.item_dim]
      out[tensor_layout.side_key(side, tensor_layout.CONTEXT_FEATURES)] = [length, self.context_dim]
      out[tensor_layout.side_key(side, tensor_layout.LABEL)] = [length]
      out[tensor_layout.side_key(side, tensor_layout.MASK)] = [length]
    return out


def _feature(key: str, value) -> tf.train.Feature:
  values = np.asarray(value).reshape(-1)
  if key in _INT_KEYS:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values.astype(np.int64)))
  return tf.train.Feature(float_list=tf.train.FloatList(value=values.astype(np.float32)))


def encode(task: Mapping[str, np.ndarray], member_key: bytes, support_size: int,
           query_size: int) -> bytes:
  """Serialises one task (task-batch arrays without the task axis)."""
  feature = {key: _feature(key, task[key]) for key in tensor_layout.task_keys()}
  feature[MEMBER_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[member_key]))
  feature[SUPPORT_SIZE] = tf.train.Feature(int64_list=tf.train.Int64List(value=[support_size]))
  feature[QUERY_SIZE] = tf.train.Feature(int64_list=tf.train.Int64List(value=[query_size]))
  example = tf.train.Example(features=tf.train.Features(feature=feature))
  return example.SerializeToString(deterministic=True)  # Map order fixed: reruns match bytes.


def format_of(serialized: bytes) -> TaskFormat:
  """The `TaskFormat` of one serialized task record."""
  feature = tf.train.Example.FromString(serialized).features.feature

  def size(key):
    kind = feature[key].WhichOneof("kind")
    return len(getattr(feature[key], kind).value) if kind else 0

  support = size(tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.LABEL))
  query = size(tensor_layout.side_key(tensor_layout.QUERY, tensor_layout.LABEL))
  return TaskFormat(
      member_dim=size(tensor_layout.MEMBER_FEATURES),
      item_dim=size(tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.ITEM_FEATURES)) // support,
      context_dim=size(tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.CONTEXT_FEATURES)) // support,
      support_length=support,
      query_length=query)


def _files(file_pattern: _FILE_PATTERNS) -> List[str]:
  patterns = [file_pattern] if isinstance(file_pattern, str) else list(file_pattern)
  files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
  if not files:
    raise FileNotFoundError(f"no task record files match {patterns}")
  return files


def infer_format(file_pattern: _FILE_PATTERNS) -> TaskFormat:
  """Reads the `TaskFormat` from the first record of gzipped TFRecord files."""
  for serialized in tf.data.TFRecordDataset(_files(file_pattern), compression_type="GZIP").take(1):
    return format_of(serialized.numpy())
  raise ValueError(f"no task record in {file_pattern}")


def parse_spec(task_format: TaskFormat) -> Dict[str, tf.io.FixedLenFeature]:
  """`tf.io.parse_example` spec of the task-batch keys."""
  return {key: tf.io.FixedLenFeature(shape, tf.int64 if key in _INT_KEYS else tf.float32)
          for key, shape in task_format.shapes().items()}


def dataset(file_pattern: _FILE_PATTERNS, task_format: TaskFormat, batch_size: int,
            shuffle: bool = False, seed: int = 0) -> tf.data.Dataset:
  """Task batches (dicts in the `limaml_keras.tensor_layout` layout) from task records.

  Args:
    file_pattern: gzipped TFRecord files or glob patterns.
    task_format: the records' sizes (`infer_format`).
    batch_size: tasks per batch.
    shuffle: reshuffle tasks every epoch.
    seed: shuffle seed.

  Returns:
    A finite dataset; the last batch may be smaller.
  """
  records = tf.data.TFRecordDataset(_files(file_pattern), compression_type="GZIP")
  if shuffle:
    records = records.shuffle(10_000, seed=seed, reshuffle_each_iteration=True)
  spec = parse_spec(task_format)
  return records.batch(batch_size).map(
      lambda serialized: tf.io.parse_example(serialized, spec),
      num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
