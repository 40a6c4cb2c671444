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

Streaming and deterministic output: members travel in batches of
`(member_id, record)` pairs; each member's record goes to shard
`crc32(member_id) % num_shards`, where `num_shards = ceil(members /
rows_per_shard)` comes from a global count (a side input), so no worker holds
more than about `rows_per_shard` records. A shard's members are sorted by id,
adapted in batches of `batch_size` in that order and written sorted, so the
same inputs and settings give byte-identical files
(`meta_embeddings-SSSSS-of-NNNNN.{tfrecord.gz,parquet}`) whatever the input
order or the runner's bundling (batch composition changes floats in the last
bits, so it must not depend on them). Everything is written into a hidden
staging directory beside the output and renamed into place when the job has
succeeded: a failed run leaves no partial output.

All records of one run must share padded lengths (one TaskGen split).
"""

import contextlib
import functools
import json
import math
import os
import uuid
import zlib
from typing import Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import metric as beam_metric
from apache_beam.options import pipeline_options
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras import serving_contract
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
SUPPORT_TIMESTAMP = tensor_layout.side_key(tensor_layout.SUPPORT, "timestamp")

OUTPUT_NAME = "meta_embeddings"
COUNTERS_FILE = "counters.json"
#: Rows per output shard, about (bounds the rows one writer holds).
DEFAULT_ROWS_PER_SHARD = 50_000
TFRECORD_SUFFIX = ".tfrecord.gz"
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
          if k == tensor_layout.MEMBER_FEATURES or k.startswith(tensor_layout.SUPPORT + "_")}
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


def adapt_inputs(parsed: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """The `adapt` signature's keyword arguments from `parse_members` output."""
  keys = [tensor_layout.MEMBER_FEATURES] + [tensor_layout.side_key(tensor_layout.SUPPORT, name)
                                      for name in tensor_layout.INTERACTION_KEYS]
  return {key: parsed[key] for key in keys}


def _as_of(parsed: Mapping[str, tf.Tensor]) -> np.ndarray:
  """Latest real support timestamp per member; 0 without timestamps or support."""
  sizes = parsed[task_records.SUPPORT_SIZE].numpy()
  if SUPPORT_TIMESTAMP not in parsed:
    return np.zeros_like(sizes)
  mask = parsed[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.MASK)].numpy() > 0
  return np.where(mask, parsed[SUPPORT_TIMESTAMP].numpy(), 0).max(axis=1)



_ONE_BYTE = tuple(bytes([b]) for b in range(0x80))


def _varint(value: int) -> bytes:
  if 0 <= value < 0x80:
    return _ONE_BYTE[value]  # Lengths and tags: by far the most common case.
  value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negatives.
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return b"".join((_ONE_BYTE[field << 3 | 2], _varint(len(payload)), payload))


def _feature_entry(key: bytes, kind: int, payload: bytes) -> bytes:
  """A `Features.feature` map entry of one list: `kind` 1 bytes (`payload`: the one value),
  2 float or 3 int64 (`payload`: the packed values; omitted when empty, as protobuf does)."""
  value_list = _length_delimited(1, payload) if payload or kind == 1 else b""
  return _length_delimited(1, _length_delimited(1, key) +
                           _length_delimited(2, _length_delimited(kind, value_list)))


def to_example(row: Mapping[str, object]) -> bytes:
  """One output row as a serialized `tf.train.Example`.

  Encoded directly in the protobuf wire format, byte for byte what
  `Example.SerializeToString(deterministic=True)` gives (map entries sorted
  by key, so reruns are byte-identical), at a fraction of the cost of
  building the message (tested against it).
  """
  embedding = np.asarray(row[tensor_layout.META_EMBEDDING], "<f4").tobytes()
  entries = (
      _feature_entry(AS_OF_TIMESTAMP.encode(), 3, _varint(int(row[AS_OF_TIMESTAMP]))),
      _feature_entry(MEMBER_ID.encode(), 1, row[MEMBER_ID].encode()),
      _feature_entry(tensor_layout.META_EMBEDDING.encode(), 2, embedding),
      _feature_entry(MODEL_VERSION.encode(), 1, row[MODEL_VERSION].encode()),
      _feature_entry(SUPPORT_SIZE.encode(), 3, _varint(int(row[SUPPORT_SIZE]))),
  )
  return _length_delimited(1, b"".join(entries))


def shard_of(member_id: str, num_shards: int) -> int:
  """The output shard of a member: a hash stable across processes and runs."""
  return zlib.crc32(member_id.encode()) % num_shards


def num_shards_for(members: int, rows_per_shard: int) -> int:
  """`ceil(members / rows_per_shard)`, at least 1."""
  return max(1, math.ceil(members / rows_per_shard))


def shard_name(shard: int, num_shards: int, suffix: str) -> str:
  """`meta_embeddings-SSSSS-of-NNNNN<suffix>` (Beam's shard naming)."""
  return f"{OUTPUT_NAME}-{shard:05d}-of-{num_shards:05d}{suffix}"


def _split_by_shard(batch: Sequence[Tuple[str, bytes]], members: int, rows_per_shard: int):
  """A batch of `(member_id, record)` pairs -> one `((shard, num_shards), pairs)` per shard."""
  num_shards = num_shards_for(members, rows_per_shard)
  by_shard = {}
  for member in batch:
    by_shard.setdefault(shard_of(member[0], num_shards), []).append(member)
  for shard, pairs in sorted(by_shard.items()):
    yield (shard, num_shards), pairs


def _shard_markers(members: int, rows_per_shard: int):
  num_shards = num_shards_for(members, rows_per_shard)
  return [((shard, num_shards), []) for shard in range(num_shards)] if members else []


def write_shard(directory: str, shard: int, num_shards: int, columns: Mapping[str, np.ndarray],
                model_version: str) -> None:
  """Writes one shard's rows (columns of `PARQUET_SCHEMA` but the version) as TFRecord + Parquet."""
  ids = columns[MEMBER_ID]
  embeddings = columns[tensor_layout.META_EMBEDDING]
  path = os.path.join(directory, shard_name(shard, num_shards, TFRECORD_SUFFIX))
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for member, embedding, size, as_of in zip(ids, embeddings, columns[SUPPORT_SIZE],
                                              columns[AS_OF_TIMESTAMP]):
      writer.write(to_example({MEMBER_ID: member, tensor_layout.META_EMBEDDING: embedding,
                               SUPPORT_SIZE: int(size), AS_OF_TIMESTAMP: int(as_of),
                               MODEL_VERSION: model_version}))
  offsets = np.arange(len(ids) + 1, dtype=np.int32) * embeddings.shape[1]
  table = pa.table({
      MEMBER_ID: pa.array(list(ids), pa.string()),
      tensor_layout.META_EMBEDDING: pa.ListArray.from_arrays(offsets, embeddings.reshape(-1)),
      SUPPORT_SIZE: pa.array(columns[SUPPORT_SIZE], pa.int64()),
      AS_OF_TIMESTAMP: pa.array(columns[AS_OF_TIMESTAMP], pa.int64()),
      MODEL_VERSION: pa.array([model_version] * len(ids), pa.string())}, schema=PARQUET_SCHEMA)
  buffer = pa.BufferOutputStream()  # pyarrow cannot write to a GFile; URIs need gfile.
  pq.write_table(table, buffer)
  with tf.io.gfile.GFile(os.path.join(directory, shard_name(shard, num_shards, PARQUET_SUFFIX)),
                         "wb") as f:
    f.write(buffer.getvalue().to_pybytes())


class AdaptFn(beam.DoFn):
  """One shard of `(member_id, task record)` pairs -> its sorted output files.

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
    self._counters = {name: beam_metric.Metrics.counter(NAMESPACE, name) for name in COUNTERS}

  def setup(self):
    self._loaded, self._adapt = load_adapt(self._model_dir)

  def _embedding_dim(self) -> int:
    return int(self._adapt.structured_outputs[tensor_layout.META_EMBEDDING].shape[-1])

  def adapt_batch(self, parsed: Mapping[str, tf.Tensor]) -> Dict[str, np.ndarray]:
    """`parse_members` output -> columns `meta_embedding`, `support_size`, `as_of_timestamp`."""
    embeddings = self._adapt(**adapt_inputs(parsed))[tensor_layout.META_EMBEDDING].numpy()
    sizes = parsed[task_records.SUPPORT_SIZE].numpy()
    self._counters[MEMBERS].inc(len(sizes))
    self._counters[EMPTY_SUPPORTS].inc(int((sizes == 0).sum()))
    if self._count_truncated:
      cap = parsed[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.MASK)].shape[1]
      self._counters[TRUNCATED_SUPPORTS].inc(int((sizes >= cap).sum()))
    return {tensor_layout.META_EMBEDDING: embeddings.astype(np.float32),
            SUPPORT_SIZE: sizes.astype(np.int64), AS_OF_TIMESTAMP: _as_of(parsed).astype(np.int64)}

  def process(self, element) -> Iterator[int]:
    (shard, num_shards), batches = element
    members = sorted(m for batch in batches for m in batch)  # `_shard_markers` add [].
    ids = [member for member, _ in members]
    duplicated = [a for a, b in zip(ids, ids[1:]) if a == b]
    if duplicated:
      raise ValueError(f"member {duplicated[0]!r} appears in more than one input record; "
                       "every member must have exactly one support set")
    records = [record for _, record in members]
    del members
    parts = [self.adapt_batch(parse_members(records[start:start + self._batch_size]))
             for start in range(0, len(records), self._batch_size)]
    if parts:
      columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:
      columns = {tensor_layout.META_EMBEDDING: np.zeros([0, self._embedding_dim()], np.float32),
                 SUPPORT_SIZE: np.zeros([0], np.int64), AS_OF_TIMESTAMP: np.zeros([0], np.int64)}
    columns[MEMBER_ID] = ids
    write_shard(self._directory, shard, num_shards, columns, self._model_version)
    yield len(ids)


def write_embeddings(batches: beam.PCollection, model_dir: str, directory: str,
                     model_version: str, batch_size: int = 256,
                     rows_per_shard: int = DEFAULT_ROWS_PER_SHARD,
                     count_truncated: bool = True) -> None:
  """Adapts members and writes the sorted output shards into `directory`.

  Members travel in batches (lists of `(member_id, serialized task record)`
  pairs), so the Beam work per member stays small.

  Args:
    batches: lists of pairs, one pair per member; records of one padded format.
    model_dir: the SavedModel (with an `adapt` signature).
    directory: receives the output files (use `staged_output`).
    model_version: stored with every row.
    batch_size: members per `adapt` call (at most).
    rows_per_shard: about this many members per output shard (and per
      worker's memory: a shard's records are sorted in memory).
    count_truncated: see `AdaptFn`.
  """
  count = (batches
           | "BatchSizes" >> beam.Map(len)
           | "CountMembers" >> beam.CombineGlobally(sum))
  keyed = batches | "SplitByShard" >> beam.FlatMap(
      _split_by_shard, beam.pvalue.AsSingleton(count), rows_per_shard)
  # One marker per shard, so that a shard no member hashes to is still written (empty).
  markers = count | "ShardMarkers" >> beam.FlatMap(_shard_markers, rows_per_shard)
  _ = ((keyed, markers)
       | "AllShards" >> beam.Flatten()
       | "GroupByShard" >> beam.GroupByKey()
       | "AdaptAndWrite" >> beam.ParDo(AdaptFn(model_dir, directory, model_version, batch_size,
                                               count_truncated)))


class _ReadMembersFn(beam.DoFn):
  """A gzipped task-record file -> lists of `(member_id, record)` pairs (`tf.data` batches)."""

  _READ_BATCH = 1024
  _KEY_SPEC = {task_records.MEMBER_KEY: tf.io.FixedLenFeature([], tf.string)}

  def process(self, path: str) -> Iterator[List[Tuple[str, bytes]]]:
    records = tf.data.TFRecordDataset(path, compression_type="GZIP").batch(self._READ_BATCH)
    for batch in records:
      keys = tf.io.parse_example(batch, self._KEY_SPEC)[task_records.MEMBER_KEY].numpy()
      yield [(k.decode(), r) for k, r in zip(keys, batch.numpy())]


def read_members(pipeline: beam.Pipeline, files: Sequence[str]) -> beam.PCollection:
  """Lists of `(member_id, record)` pairs of gzipped task-record files (one worker a file).

  Reading with `tf.data` and parsing only the member keys, a batch at a time,
  keeps per-record Python work small; TaskGen writes several shard files, so
  files still spread over workers.
  """
  return (pipeline
          | "TaskFiles" >> beam.Create(list(files))
          | "SpreadFiles" >> beam.Reshuffle()
          | "ReadMembers" >> beam.ParDo(_ReadMembersFn()))


def build_embedding_pipeline(pipeline: beam.Pipeline, model_dir: str,
                             task_files: Sequence[str], directory: str,
                             model_version: str, batch_size: int = 256,
                             rows_per_shard: int = DEFAULT_ROWS_PER_SHARD) -> None:
  """Adds the meta-embeddings transforms over task-record files to `pipeline`.

  Args:
    pipeline: the Beam pipeline.
    model_dir: the SavedModel (with an `adapt` signature).
    task_files: gzipped task-record files.
    directory: receives the output files (use `staged_output`).
    model_version: stored with every row.
    batch_size: members per `adapt` call (at most).
    rows_per_shard: about this many members per output shard.
  """
  write_embeddings(read_members(pipeline, task_files), model_dir, directory, model_version,
                   batch_size, rows_per_shard)


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
