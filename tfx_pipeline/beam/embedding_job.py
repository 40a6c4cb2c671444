"""Meta embeddings job: a Beam pipeline that adapts the trained model to every member.

Input: task records (`tfx_pipeline.components.task_records`; only the member and support
keys are read), either TaskGen's files (`run`) or support-only records built
from raw CSVs or transformed interactions by `tfx_pipeline.beam.member_supports`
(`run_csv`, `run_transformed`), and the Trainer's
SavedModel with its `adapt` signature (`tfx_pipeline.models.export`). The job loads
the SavedModel once per worker (`DoFn.setup`), runs `adapt` on batches of
members and writes one row per member, as gzipped TFRecord
`tf.train.Example`s and as Parquet, both with the columns::

    member_id         string  the raw member key (TaskGen's `member_key`)
    meta_embedding    float   [d] the Meta Block adapted on the member's support
    support_size      int64   real support interactions (0: cold-start embedding)
    as_of_timestamp   int64   latest support timestamp; 0 when the records carry
                              no `support_timestamp` feature (TaskGen's don't)
    model_version     string

plus `counters.json`. Beam counters (namespace `NAMESPACE`): `members`,
`empty_supports` (cold-start members) and `truncated_supports` (supports that
lost older interactions to the cap; for TaskGen records: supports at the
padded cap).

Streaming and deterministic output: members travel in batches of numpy
columns (records parsed a `tf.data` batch at a time). Each member goes to
shard `crc32(member_id) % num_shards`, where `num_shards = ceil(members /
rows_per_shard)` comes from a global count (a side input; for task-record
files a first, cheap pass that only counts records). The shuffle by shard
moves spill files, not records: each bundle appends its members to one spill
file per shard in the staging directory and the GroupByKey carries the file
names, so no worker, and no runner's shuffle (the DirectRunner keeps a
shuffle's input in memory), holds more than about `rows_per_shard` members.
A shard's members are sorted by id, adapted in batches of `batch_size` in that
order and written sorted, so the same inputs and settings give byte-identical
files (`meta_embeddings-SSSSS-of-NNNNN.{tfrecord.gz,parquet}`) whatever the
input order or the runner's bundling (batch composition changes floats in the
last bits, so it must not depend on them). Everything is written into a
hidden staging directory beside the output and renamed into place when the
job has succeeded: a failed run leaves no partial output.

All records of one run must share padded lengths (one TaskGen split).
"""

from concurrent import futures
import contextlib
import functools
import json
import math
import os
import pickle
import uuid
import zlib
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import metric as beam_metric
from apache_beam.options import pipeline_options
from apache_beam.transforms import window
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras import serving_contract
from tfx_pipeline.beam import example_rows
from tfx_pipeline.components import task_records

NAMESPACE = "limaml_meta_embeddings"
MEMBERS = "members"
EMPTY_SUPPORTS = "empty_supports"
TRUNCATED_SUPPORTS = "truncated_supports"
COUNTERS = (MEMBERS, EMPTY_SUPPORTS, TRUNCATED_SUPPORTS)

MEMBER_ID = "member_id"
SUPPORT_SIZE = "support_size"
AS_OF_TIMESTAMP = "as_of_timestamp"
MODEL_VERSION = "model_version"
#: Optional int64 `[S]` feature of a task record: the support interactions' timestamps.
SUPPORT_TIMESTAMP = tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.TIMESTAMP)

OUTPUT_NAME = "meta_embeddings"
COUNTERS_FILE = "counters.json"
#: Rows per output shard, about (bounds the rows one writer holds).
DEFAULT_ROWS_PER_SHARD = 50_000
TFRECORD_SUFFIX = ".tfrecord.gz"
#: Spill files of the shuffle by shard, inside the staging directory (removed before publishing).
SPILL_DIR = ".spill"
_READ_BATCH = 4096  # Task records per `tf.data` batch when reading and counting.
_ADAPT_THREADS = 2  # `adapt` calls in flight per worker.
_READ_PARALLELISM = 2  # Parsed batches in flight (and prefetched) per file read.
_READ_BUFFER_BYTES = 8 << 20  # Read-ahead of a task-record file (TF's default, 256 KiB, is slow).
PARQUET_SUFFIX = ".parquet"

PARQUET_SCHEMA = pa.schema([
    (MEMBER_ID, pa.string()),
    (tensor_layout.META_EMBEDDING, pa.list_(pa.float32())),
    (SUPPORT_SIZE, pa.int64()),
    (AS_OF_TIMESTAMP, pa.int64()),
    (MODEL_VERSION, pa.string()),
])

_SAVED_MODEL_FILE = "saved_model.pb"


def check_model_dir(model_dir: str) -> None:
  """Raises ValueError unless `model_dir` is a SavedModel with an `adapt` signature.

  Reads only the SavedModel proto, so it is cheap enough for a launcher.
  """
  path = os.path.join(model_dir, _SAVED_MODEL_FILE)
  if not tf.io.gfile.exists(path):
    raise ValueError(f"{model_dir!r} is not a SavedModel directory (no {_SAVED_MODEL_FILE})")
  # pylint: disable=g-import-not-at-top
  from tensorflow.core.protobuf import saved_model_pb2
  # pylint: enable=g-import-not-at-top
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(path, "rb") as f:
    saved_model.ParseFromString(f.read())
  signatures = {name for graph in saved_model.meta_graphs for name in graph.signature_def}
  _check_signatures(model_dir, signatures)


def _check_signatures(model_dir: str, signatures: Iterable[str]) -> None:
  if serving_contract.ADAPT_SIGNATURE not in signatures:
    raise ValueError(f"SavedModel {model_dir!r} has no {serving_contract.ADAPT_SIGNATURE!r} signature "
                     f"(has {sorted(signatures)}); export it with tfx_pipeline.models.export")


def load_adapt(model_dir: str):
  """The `adapt` concrete function of the SavedModel in `model_dir`.

  Raises:
    ValueError: when the SavedModel has no `adapt` signature.
  """
  loaded = tf.saved_model.load(model_dir)
  _check_signatures(model_dir, loaded.signatures.keys())
  return loaded, loaded.signatures[serving_contract.ADAPT_SIGNATURE]


def support_parse_spec(task_format: task_records.TaskFormat,
                       with_timestamp: bool = False) -> Dict[str, tf.io.FixedLenFeature]:
  """`tf.io.parse_example` spec of the keys the job reads from a task record."""
  spec = {k: v for k, v in task_records.parse_spec(task_format).items()
          if k in (tensor_layout.MEMBER_ID, tensor_layout.MEMBER_FEATURES)
          or k.startswith(tensor_layout.SUPPORT + "_")}
  spec[task_records.MEMBER_KEY] = tf.io.FixedLenFeature([], tf.string)
  spec[task_records.SUPPORT_SIZE] = tf.io.FixedLenFeature([], tf.int64)
  if with_timestamp:
    spec[SUPPORT_TIMESTAMP] = tf.io.FixedLenFeature([task_format.support_length], tf.int64)
  return spec


def _has_timestamp(serialized: bytes) -> bool:
  return SUPPORT_TIMESTAMP in tf.train.Example.FromString(serialized).features.feature


@functools.lru_cache(maxsize=8)
def _parser(task_format: task_records.TaskFormat, with_timestamp: bool):
  """A traced `parse_example` for one record format (no eager op-by-op fallback per batch)."""
  spec = support_parse_spec(task_format, with_timestamp)
  return tf.function(lambda serialized: tf.io.parse_example(serialized, spec),
                     input_signature=[tf.TensorSpec([None], tf.string)])


@contextlib.contextmanager
def _format_errors(task_format: task_records.TaskFormat) -> Iterator[None]:
  try:
    yield
  except tf.errors.InvalidArgumentError as e:
    raise ValueError("task records of one run must share padded lengths (one TaskGen split); "
                     f"expected {task_format}: {e.message}") from e


def parse_members(serialized: Sequence[bytes]) -> Dict[str, tf.Tensor]:
  """A batch of serialized task records -> member/support tensors (adapt inputs and more).

  Raises:
    ValueError: when the records have different padded lengths.
  """
  task_format = task_records.format_of(serialized[0])
  parse = _parser(task_format, _has_timestamp(serialized[0]))
  with _format_errors(task_format):
    return parse(tf.constant(list(serialized)))


def member_columns(serialized: Sequence[bytes]) -> Dict[str, np.ndarray]:
  """`parse_members` as numpy columns (`member_key`: an object array of `bytes`)."""
  return {key: value.numpy() for key, value in parse_members(serialized).items()}


def adapt_input_keys(adapt=None) -> List[str]:
  """The inputs the job passes to `adapt`: `serving_contract.ADAPT_INPUTS`, or those `adapt` takes.

  Args:
    adapt: the loaded `adapt` signature; when given, only the inputs it takes
      are kept, so a SavedModel exported before `adapt` took `member_id`
      still adapts (its model has no member-ID embedding to read it).

  Raises:
    ValueError: `adapt` takes an input the task records do not provide.
  """
  keys = list(serving_contract.ADAPT_INPUTS)
  if adapt is None:
    return keys
  wanted = set(adapt.structured_input_signature[1])
  unknown = sorted(wanted - set(keys))
  if unknown:
    raise ValueError(f"the model's {serving_contract.ADAPT_SIGNATURE!r} signature takes "
                     f"{unknown}, which the meta-embedding job does not provide (it provides "
                     f"{keys}); export the model with this version's tfx_pipeline.models.export")
  return [key for key in keys if key in wanted]


def adapt_inputs(parsed: Mapping[str, tf.Tensor],
                 keys: Sequence[str] = serving_contract.ADAPT_INPUTS) -> Dict[str, tf.Tensor]:
  """The `adapt` signature's keyword arguments from `parse_members` output (`adapt_input_keys`)."""
  return {key: parsed[key] for key in keys}


def _as_of(parsed: Mapping[str, object]) -> np.ndarray:
  """Latest real support timestamp per member; 0 without timestamps or support."""
  sizes = np.asarray(parsed[task_records.SUPPORT_SIZE])
  if SUPPORT_TIMESTAMP not in parsed:
    return np.zeros_like(sizes)
  mask = np.asarray(parsed[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.MASK)]) > 0
  return np.where(mask, np.asarray(parsed[SUPPORT_TIMESTAMP]), 0).max(axis=1)


def to_examples(columns: Mapping[str, object], model_version: str) -> List[bytes]:
  """Output rows (columns of `PARQUET_SCHEMA` but the version) as serialized `tf.train.Example`s.

  Byte for byte what `Example.SerializeToString(deterministic=True)` gives
  (map entries sorted by key, so reruns are byte-identical), encoded for all
  rows at once (`example_rows`). `member_id` holds `bytes` (UTF-8) or `str`.
  """
  ids = [m.encode() if isinstance(m, str) else m for m in columns[MEMBER_ID]]
  rows = len(ids)
  if not rows:
    return []
  return example_rows.encode({
      MEMBER_ID: (example_rows.BYTES, ids),
      tensor_layout.META_EMBEDDING: (
          example_rows.FLOAT,
          np.asarray(columns[tensor_layout.META_EMBEDDING], np.float32).reshape(rows, -1)),
      SUPPORT_SIZE: (example_rows.INT64, np.asarray(columns[SUPPORT_SIZE], np.int64)),
      AS_OF_TIMESTAMP: (example_rows.INT64, np.asarray(columns[AS_OF_TIMESTAMP], np.int64)),
      MODEL_VERSION: (example_rows.BYTES, [model_version.encode()] * rows)}, rows)


def to_example(row: Mapping[str, object]) -> bytes:
  """One output row (`member_id` a `str`, the model version included) as `to_examples` encodes it."""
  columns = {key: [value] for key, value in row.items() if key != MODEL_VERSION}
  return to_examples(columns, row[MODEL_VERSION])[0]


def _member_hashes(member_ids: Sequence[bytes]) -> np.ndarray:
  return np.fromiter((zlib.crc32(m) for m in member_ids), np.int64, len(member_ids))


def shard_of(member_id: str, num_shards: int) -> int:
  """The output shard of a member: a hash stable across processes and runs."""
  return int(_member_hashes([member_id.encode()])[0] % num_shards)


def num_shards_for(members: int, rows_per_shard: int) -> int:
  """`ceil(members / rows_per_shard)`, at least 1."""
  return max(1, math.ceil(members / rows_per_shard))


def shard_name(shard: int, num_shards: int, suffix: str) -> str:
  """`meta_embeddings-SSSSS-of-NNNNN<suffix>` (Beam's shard naming)."""
  return f"{OUTPUT_NAME}-{shard:05d}-of-{num_shards:05d}{suffix}"


def _shard_markers(members: int, rows_per_shard: int):
  """One `((shard, num_shards), "")` per shard (no spill file), so every shard is written."""
  num_shards = num_shards_for(members, rows_per_shard)
  return [((shard, num_shards), "") for shard in range(num_shards)] if members else []


def write_shard(directory: str, shard: int, num_shards: int, columns: Mapping[str, np.ndarray],
                model_version: str) -> None:
  """Writes one shard's rows (columns of `PARQUET_SCHEMA` but the version) as TFRecord + Parquet.

  `member_id` holds UTF-8 `bytes`.
  """
  ids = list(columns[MEMBER_ID])
  embeddings = np.asarray(columns[tensor_layout.META_EMBEDDING], np.float32)  # [rows, d]
  path = os.path.join(directory, shard_name(shard, num_shards, TFRECORD_SUFFIX))
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for example in to_examples(columns, model_version):
      writer.write(example)
  offsets = np.arange(len(ids) + 1, dtype=np.int32) * embeddings.shape[1]
  table = pa.table({
      MEMBER_ID: pa.array(ids, pa.binary()).cast(pa.string()),
      tensor_layout.META_EMBEDDING: pa.ListArray.from_arrays(offsets, embeddings.reshape(-1)),
      SUPPORT_SIZE: pa.array(columns[SUPPORT_SIZE], pa.int64()),
      AS_OF_TIMESTAMP: pa.array(columns[AS_OF_TIMESTAMP], pa.int64()),
      MODEL_VERSION: pa.array([model_version] * len(ids), pa.string())}, schema=PARQUET_SCHEMA)
  buffer = pa.BufferOutputStream()  # pyarrow cannot write to a GFile; URIs need gfile.
  pq.write_table(table, buffer)
  with tf.io.gfile.GFile(os.path.join(directory, shard_name(shard, num_shards, PARQUET_SUFFIX)),
                         "wb") as f:
    f.write(buffer.getvalue().to_pybytes())


class _SpillFn(beam.DoFn):
  """Batches of member columns -> spill files, one per output shard and bundle.

  Each batch is cut by shard (`shard_of`) and its pieces appended (pickled
  columns, as TFRecords) to the bundle's spill file of that shard; at the end
  of the bundle it emits `((shard, num_shards), spill file)` per file. The
  shuffle then moves file names only, so no runner holds the members' records
  in memory (the DirectRunner keeps a shuffle's whole input in memory).
  """

  def __init__(self, spill_dir: str, rows_per_shard: int):
    super().__init__()
    self._spill_dir = spill_dir
    self._rows_per_shard = rows_per_shard
    self._writers = {}

  def start_bundle(self):
    self._writers = {}

  def process(self, columns: Mapping[str, np.ndarray], members: int) -> Iterator:
    self._spill(columns, members)
    return iter(())

  def _spill(self, columns: Mapping[str, np.ndarray], members: int) -> None:
    num_shards = num_shards_for(members, self._rows_per_shard)
    shards = _member_hashes(columns[task_records.MEMBER_KEY]) % num_shards
    order = np.argsort(shards, kind="stable")
    for rows in np.split(order, np.flatnonzero(np.diff(shards[order])) + 1):
      if len(rows):
        piece = {key: value[rows] for key, value in columns.items()}
        self._writer(int(shards[rows[0]]), num_shards).write(
            pickle.dumps(piece, protocol=pickle.HIGHEST_PROTOCOL))

  def _writer(self, shard: int, num_shards: int):
    if (shard, num_shards) not in self._writers:
      tf.io.gfile.makedirs(self._spill_dir)
      path = os.path.join(self._spill_dir, f"{uuid.uuid4().hex}-{shard:05d}")
      self._writers[shard, num_shards] = (path, tf.io.TFRecordWriter(path))
    return self._writers[shard, num_shards][1]

  def finish_bundle(self) -> Iterator:
    for key, (path, writer) in sorted(self._writers.items()):
      writer.close()
      yield window.GlobalWindows.windowed_value((key, path))
    self._writers = {}


def _read_spilled(paths: Sequence[str]) -> Dict[str, np.ndarray]:
  """The member columns of spill files, concatenated (`{}` without any).

  Raises:
    ValueError: the pieces have different keys or padded lengths.
  """
  pieces = [pickle.loads(blob) for path in paths
            for blob in tf.data.TFRecordDataset(path).as_numpy_iterator()]
  if not pieces:
    return {}
  layouts = {tuple(sorted((key, value.shape[1:]) for key, value in piece.items()))
             for piece in pieces}
  if len(layouts) > 1:
    raise ValueError("task records of one run must share padded lengths (one TaskGen split); "
                     f"found members with feature shapes {sorted(map(dict, layouts), key=str)}")
  return {key: np.concatenate([piece[key] for piece in pieces]) for key in pieces[0]}


class AdaptFn(beam.DoFn):
  """One shard's spill files -> its sorted output files (written by the end of the bundle).

  The shard's members are sorted by id and cut into batches of `batch_size`
  in that order, so batch composition, and with it every float of the output,
  depends only on the input records and the settings.

  Args:
    model_dir: the SavedModel (with an `adapt` signature), loaded once per worker.
    directory: receives the shard files.
    model_version: stored with every row.
    batch_size: members per `adapt` call (at most).
    count_truncated: count supports at the padded cap as truncated (TaskGen
      records); `member_supports` counts real truncation itself.
  """

  def __init__(self, model_dir: str, directory: str = "", model_version: str = "",
               batch_size: int = 256, count_truncated: bool = True):
    super().__init__()
    self._model_dir = model_dir
    self._directory = directory
    self._model_version = model_version
    self._batch_size = batch_size
    self._count_truncated = count_truncated
    self._loaded = None
    self._adapt = None
    self._adapt_keys = None
    self._writer = None  # Set up per worker: a thread writing shards.
    self._writing = None  # The future of the shard being written.
    self._counters = {name: beam_metric.Metrics.counter(NAMESPACE, name) for name in COUNTERS}

  def setup(self):
    self._loaded, self._adapt = load_adapt(self._model_dir)
    self._adapt_keys = adapt_input_keys(self._adapt)
    self._writer = futures.ThreadPoolExecutor(1)

  def _wait_for_write(self) -> None:
    """Waits for the shard being written (raising its error, if any)."""
    if self._writing is not None:
      writing, self._writing = self._writing, None
      writing.result()

  def finish_bundle(self):
    self._wait_for_write()

  def teardown(self):
    if self._writer is not None:
      self._writer.shutdown()

  def _embeddings(self, parsed: Mapping[str, np.ndarray]) -> np.ndarray:
    inputs = {key: tf.constant(value) for key, value in adapt_inputs(parsed, self._adapt_keys).items()}
    return self._adapt(**inputs)[tensor_layout.META_EMBEDDING].numpy()

  def adapt_batch(self, parsed: Mapping[str, np.ndarray],
                  embeddings: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Member columns -> columns `meta_embedding`, `support_size`, `as_of_timestamp`.

    Counts the members (call it on the bundle's thread: Beam counters are
    per thread); `embeddings`, when given, are the batch's, already adapted.
    """
    if embeddings is None:
      embeddings = self._embeddings(parsed)
    sizes = np.asarray(parsed[task_records.SUPPORT_SIZE])
    self._counters[MEMBERS].inc(len(sizes))
    self._counters[EMPTY_SUPPORTS].inc(int((sizes == 0).sum()))
    if self._count_truncated:
      cap = parsed[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.MASK)].shape[1]
      self._counters[TRUNCATED_SUPPORTS].inc(int((sizes >= cap).sum()))
    return {tensor_layout.META_EMBEDDING: embeddings.astype(np.float32),
            SUPPORT_SIZE: sizes.astype(np.int64), AS_OF_TIMESTAMP: _as_of(parsed).astype(np.int64)}

  def process(self, element) -> Iterator[int]:
    (shard, num_shards), paths = element
    paths = sorted(path for path in paths if path)  # `_shard_markers` add "".
    members = _read_spilled(paths)
    ids = members.get(task_records.MEMBER_KEY, np.zeros([0], object))
    order = np.array(sorted(range(len(ids)), key=ids.__getitem__), np.int64)
    ids = ids[order]
    duplicated = np.flatnonzero(ids[1:] == ids[:-1]) if len(ids) > 1 else []
    if len(duplicated):
      raise ValueError(f"member {ids[duplicated[0]].decode(errors='replace')!r} appears in more "
                       "than one input record; every member must have exactly one support set")
    batches = [{key: value[order[start:start + self._batch_size]]
                for key, value in members.items()}
               for start in range(0, len(order), self._batch_size)]
    del members
    # `adapt` calls of a few batches at once: TF runs one call's small ops mostly
    # on one core and releases the GIL, so they overlap.
    with futures.ThreadPoolExecutor(_ADAPT_THREADS) as pool:
      parts = [self.adapt_batch(batch, embeddings)
               for batch, embeddings in zip(batches, pool.map(self._embeddings, batches))]
    del batches
    if parts:
      columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
      columns = {tensor_layout.META_EMBEDDING: np.zeros([0, 0], np.float32),
                 SUPPORT_SIZE: np.zeros([0], np.int64), AS_OF_TIMESTAMP: np.zeros([0], np.int64)}
    columns[MEMBER_ID] = ids
    # Written by a second thread while the next shard is adapted (one shard at a time).
    self._wait_for_write()
    # The spill files stay (a retried bundle reads them again); `run_pipeline` removes them.
    self._writing = self._writer.submit(write_shard, self._directory, shard, num_shards, columns,
                                        self._model_version)
    yield len(ids)


def _adapt_and_write(spilled: beam.PCollection, count: beam.PCollection, model_dir: str,
                     directory: str, model_version: str, batch_size: int, rows_per_shard: int,
                     count_truncated: bool) -> None:
  """`((shard, num_shards), spill file)` pairs -> the output shards (see `write_embeddings`)."""
  # One marker per shard, so that a shard no member hashes to is still written (empty).
  markers = count | "ShardMarkers" >> beam.FlatMap(_shard_markers, rows_per_shard)
  _ = ((spilled, markers)
       | "AllShards" >> beam.Flatten()
       | "GroupByShard" >> beam.GroupByKey()
       | "AdaptAndWrite" >> beam.ParDo(AdaptFn(model_dir, directory, model_version, batch_size,
                                               count_truncated)))


def write_embeddings(members: beam.PCollection, model_dir: str, directory: str,
                     model_version: str, batch_size: int = 256,
                     rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
                     count_truncated: bool = True) -> None:
  """Adapts members and writes the sorted output shards into `directory`.

  Members travel in batches of numpy columns (`member_columns`), so the Beam
  work per member stays small, and are grouped by output shard through spill
  files under `directory/SPILL_DIR` (`_SpillFn`; `run_pipeline` removes the
  folder): the shuffle carries file names, not records. The spill step waits
  for the member count (a side input), so a runner that runs one stage at a
  time holds `members` until it is known; task-record files avoid that
  (`build_embedding_pipeline`).

  Args:
    members: batches of member columns, one row per member; records of one
      padded format.
    model_dir: the SavedModel (with an `adapt` signature).
    directory: receives the output files (use `staged_output`).
    model_version: stored with every row.
    batch_size: members per `adapt` call (at most).
    rows_per_shard: about this many members per output shard (and per
      worker's memory: a shard's members are sorted in memory).
    count_truncated: see `AdaptFn`.
  """
  count = (members
           | "BatchSizes" >> beam.Map(lambda columns: len(columns[task_records.MEMBER_KEY]))
           | "CountMembers" >> beam.CombineGlobally(sum))
  spilled = members | "SpillByShard" >> beam.ParDo(
      _SpillFn(os.path.join(directory, SPILL_DIR), rows_per_shard),
      beam.pvalue.AsSingleton(count))
  _adapt_and_write(spilled, count, model_dir, directory, model_version, batch_size,
                   rows_per_shard, count_truncated)


def _records(path: str) -> tf.data.Dataset:
  return tf.data.TFRecordDataset(path, compression_type="GZIP", buffer_size=_READ_BUFFER_BYTES)


def _first_record(path: str) -> Optional[bytes]:
  for record in _records(path).take(1):
    return record.numpy()
  return None


def count_records(path: str) -> int:
  """The number of records in a gzipped TFRecord file."""
  batches = _records(path).batch(_READ_BATCH)
  return int(sum(batches.map(tf.size).as_numpy_iterator()))


def read_member_columns(path: str) -> Iterator[Dict[str, np.ndarray]]:
  """A gzipped task-record file -> batches of member columns (`tf.data`, parsed in parallel).

  Raises:
    ValueError: the file's records have different padded lengths.
  """
  first = _first_record(path)
  if first is None:
    return
  task_format = task_records.format_of(first)
  records = _records(path).batch(_READ_BATCH).map(
      _parser(task_format, _has_timestamp(first)), num_parallel_calls=_READ_PARALLELISM)
  with _format_errors(task_format):
    # A fixed prefetch: an autotuned buffer grows with the file, and with it the memory.
    for parsed in records.prefetch(_READ_PARALLELISM):
      yield {key: value.numpy() for key, value in parsed.items()}


class _ReadAndSpillFn(_SpillFn):
  """A task-record file -> its members in the bundle's spill files (see `_SpillFn`)."""

  def process(self, path: str, members: int) -> Iterator:
    for columns in read_member_columns(path):
      self._spill(columns, members)
    return iter(())


def build_embedding_pipeline(pipeline: beam.Pipeline, model_dir: str,
                             task_files: Sequence[str], directory: str,
                             model_version: str, batch_size: int = 256,
                             rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> None:
  """Adds the meta-embeddings transforms over task-record files to `pipeline`.

  A file is read by one worker (TaskGen writes several), once to count its
  records and once to parse them a `tf.data` batch at a time straight into
  the spill files: counting first lets the members stream instead of
  waiting, all in memory, for the member count.

  Args:
    pipeline: the Beam pipeline.
    model_dir: the SavedModel (with an `adapt` signature).
    task_files: gzipped task-record files.
    directory: receives the output files (use `staged_output`).
    model_version: stored with every row.
    batch_size: members per `adapt` call (at most).
    rows_per_shard: about this many members per output shard.
  """
  files = (pipeline
           | "TaskFiles" >> beam.Create(list(task_files))
           | "SpreadFiles" >> beam.Reshuffle())
  count = (files
           | "CountRecords" >> beam.Map(count_records)
           | "CountMembers" >> beam.CombineGlobally(sum))
  spilled = files | "ReadAndSpill" >> beam.ParDo(
      _ReadAndSpillFn(os.path.join(directory, SPILL_DIR), rows_per_shard),
      beam.pvalue.AsSingleton(count))
  _adapt_and_write(spilled, count, model_dir, directory, model_version, batch_size,
                   rows_per_shard, count_truncated=True)


def _counters(result) -> Dict[str, int]:
  query = result.metrics().query(beam_metric.MetricsFilter().with_namespace(NAMESPACE))
  counts = dict.fromkeys(COUNTERS, 0)
  for counter in query["counters"]:
    value = counter.committed if counter.committed is not None else counter.attempted
    counts[counter.key.metric.name] += int(value)
  return counts


def task_file_list(task_files) -> List[str]:
  """Expands patterns; raises FileNotFoundError/ValueError when there is nothing to read."""
  patterns = [task_files] if isinstance(task_files, str) else list(task_files)
  task_records.infer_format(patterns)  # No match, or no record at all: a clear error.
  return sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))


def check_output_dir(output_dir: str) -> None:
  """Raises ValueError when `output_dir` exists and is not an empty directory."""
  if tf.io.gfile.exists(output_dir) and (not tf.io.gfile.isdir(output_dir)
                                         or tf.io.gfile.listdir(output_dir)):
    raise ValueError(f"output {output_dir!r} exists and is not an empty directory; "
                     "choose a new output directory")


@contextlib.contextmanager
def staged_output(output_dir: str) -> Iterator[str]:
  """Yields a hidden staging directory that replaces `output_dir` on success.

  The staging directory is a sibling (`.<name>.tmp-<random>`), so the final
  rename stays on one filesystem; on an exception it is deleted and
  `output_dir` is left as it was.

  Raises:
    ValueError: `output_dir` exists and is not an empty directory.
  """
  output_dir = output_dir.rstrip("/")
  check_output_dir(output_dir)
  parent, name = os.path.split(output_dir)
  stage = os.path.join(parent, f".{name}.tmp-{uuid.uuid4().hex}")
  tf.io.gfile.makedirs(stage)
  try:
    yield stage
    check_output_dir(output_dir)
    if tf.io.gfile.exists(output_dir):  # An empty directory (a TFX output artifact's).
      tf.io.gfile.rmtree(output_dir)
    tf.io.gfile.rename(stage, output_dir)
  except BaseException:
    if tf.io.gfile.exists(stage):
      tf.io.gfile.rmtree(stage)
    raise


def run_pipeline(pipeline: beam.Pipeline, build: Callable[[beam.Pipeline, str], None],
                 output_dir: str) -> Dict[str, int]:
  """Builds the job with `build(pipeline, staging_dir)`, runs it and publishes `output_dir`.

  Writes `counters.json` beside the data; returns the counters.

  Raises:
    ValueError: the job adapted no member (nothing is published).
  """
  with staged_output(output_dir) as stage:
    build(pipeline, stage)
    result = pipeline.run()
    result.wait_until_finish()
    if tf.io.gfile.exists(os.path.join(stage, SPILL_DIR)):
      tf.io.gfile.rmtree(os.path.join(stage, SPILL_DIR))
    counts = _counters(result)
    if not counts[MEMBERS]:
      raise ValueError("the embedding job found no member in its input")
    with tf.io.gfile.GFile(os.path.join(stage, COUNTERS_FILE), "w") as f:
      f.write(json.dumps(counts, indent=2, sort_keys=True) + "\n")
  return counts


def make_pipeline(beam_args: Optional[Sequence[str]] = None) -> beam.Pipeline:
  """A Beam pipeline from command-line style arguments (DirectRunner by default)."""
  return beam.Pipeline(options=pipeline_options.PipelineOptions(list(beam_args or [])))


def check_job_arguments(batch_size: int, rows_per_shard: int) -> None:
  """Raises ValueError on a batch size or shard size below 1."""
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if rows_per_shard < 1:
    raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")


def run(model_dir: str, task_files, output_dir: str, model_version: str,
        beam_args: Optional[Sequence[str]] = None, batch_size: int = 256,
        rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> Dict[str, int]:
  """Runs the job on task records (DirectRunner unless `beam_args` name a runner).

  Args:
    model_dir: the SavedModel (with an `adapt` signature).
    task_files: gzipped task-record files or glob patterns.
    output_dir: receives `meta_embeddings-*.tfrecord.gz`,
      `meta_embeddings-*.parquet` and `counters.json`; must not exist or be
      empty. It appears only when the job has succeeded.
    model_version: stored with every row.
    beam_args: Beam pipeline arguments, for example `["--runner=DataflowRunner", ...]`.
    batch_size: members per `adapt` call (at most).
    rows_per_shard: about this many members per output shard.

  Returns:
    `{counter: value}` for `COUNTERS`.

  Raises:
    FileNotFoundError: no file matches `task_files`.
    ValueError: the files hold no task record, `model_dir` is not a
      SavedModel with an `adapt` signature, or `output_dir` is not empty.
  """
  check_job_arguments(batch_size, rows_per_shard)
  files = task_file_list(task_files)
  check_model_dir(model_dir)
  check_output_dir(output_dir)
  return run_pipeline(
      make_pipeline(beam_args),
      lambda pipeline, stage: build_embedding_pipeline(
          pipeline, model_dir, files, stage, model_version, batch_size, rows_per_shard),
      output_dir)


def read_table(output_dir: str):
  """`(member_ids, embeddings [M, d] float32, rows)` of a job output, sorted by member id.

  `rows` is the pyarrow table of all Parquet shards (the whole table is held
  in memory: use it for tables that fit, such as an in-graph member table).

  Raises:
    FileNotFoundError: the directory holds no Parquet shard.
  """
  files = sorted(tf.io.gfile.glob(os.path.join(output_dir, f"{OUTPUT_NAME}-*{PARQUET_SUFFIX}")))
  if not files:
    raise FileNotFoundError(f"no {OUTPUT_NAME} Parquet files in {output_dir!r}")
  tables = []
  for path in files:
    with tf.io.gfile.GFile(path, "rb") as f:
      tables.append(pq.read_table(pa.BufferReader(f.read())))
  table = pa.concat_tables(tables).sort_by(MEMBER_ID)
  ids = table.column(MEMBER_ID).to_pylist()
  values = table.column(tensor_layout.META_EMBEDDING).combine_chunks()
  embeddings = values.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
  return ids, embeddings.reshape(len(ids), -1), table
