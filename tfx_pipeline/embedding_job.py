"""Meta embeddings job: a Beam pipeline that adapts the trained model to every member.

Input: TaskGen task records (`tfx_pipeline.task_records`; only the member and
support keys are read) and the Trainer's SavedModel with its `adapt`
signature (`tfx_pipeline.export`). The job batches members
(`beam.BatchElements`), loads the SavedModel once per worker (`DoFn.setup`),
runs `adapt` on each batch and writes one record per member, as gzipped
TFRecord `tf.train.Example`s and as Parquet, both with the columns::

    member_id         string  the raw member key (TaskGen's `member_key`)
    meta_embedding    float   [d] the Meta Block adapted on the member's support
    support_size      int64   real support interactions (0: cold-start embedding)
    as_of_timestamp   int64   latest support timestamp; 0 when the records carry
                              no `support_timestamp` feature (TaskGen's don't)
    model_version     string

Beam counters (namespace `NAMESPACE`): `members`, `empty_supports`
(cold-start members) and `truncated_supports` (supports at the padded cap,
which TaskGen reaches only by dropping older interactions).

All records of one run must share padded lengths (one TaskGen split).
"""

import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.metrics import metric as beam_metric
from apache_beam.options import pipeline_options
import numpy as np
import pyarrow as pa
import tensorflow as tf

from limaml_keras import features
from tfx_pipeline import export
from tfx_pipeline import task_records

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
SUPPORT_TIMESTAMP = features.side_key(features.SUPPORT, "timestamp")

OUTPUT_NAME = "meta_embeddings"
TFRECORD_SUFFIX = ".tfrecord.gz"
PARQUET_SUFFIX = ".parquet"

PARQUET_SCHEMA = pa.schema([
    (MEMBER_ID, pa.string()),
    (features.META_EMBEDDING, pa.list_(pa.float32())),
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
  if export.ADAPT_SIGNATURE not in signatures:
    raise ValueError(f"SavedModel {model_dir!r} has no {export.ADAPT_SIGNATURE!r} signature "
                     f"(has {sorted(signatures)}); export it with tfx_pipeline.export")


def load_adapt(model_dir: str):
  """The `adapt` concrete function of the SavedModel in `model_dir`.

  Raises:
    ValueError: when the SavedModel has no `adapt` signature.
  """
  loaded = tf.saved_model.load(model_dir)
  _check_signatures(model_dir, loaded.signatures.keys())
  return loaded, loaded.signatures[export.ADAPT_SIGNATURE]


def support_parse_spec(task_format: task_records.TaskFormat,
                       with_timestamp: bool = False) -> Dict[str, tf.io.FixedLenFeature]:
  """`tf.io.parse_example` spec of the keys the job reads from a task record."""
  spec = {k: v for k, v in task_records.parse_spec(task_format).items()
          if k == features.MEMBER_FEATURES or k.startswith(features.SUPPORT + "_")}
  spec[task_records.MEMBER_KEY] = tf.io.FixedLenFeature([], tf.string)
  spec[task_records.SUPPORT_SIZE] = tf.io.FixedLenFeature([], tf.int64)
  if with_timestamp:
    spec[SUPPORT_TIMESTAMP] = tf.io.FixedLenFeature([task_format.support_length], tf.int64)
  return spec


def _has_timestamp(serialized: bytes) -> bool:
  return SUPPORT_TIMESTAMP in tf.train.Example.FromString(serialized).features.feature


def parse_members(serialized: Sequence[bytes]) -> Dict[str, tf.Tensor]:
  """A batch of serialized task records -> member/support tensors (adapt inputs and more).

  Raises:
    ValueError: when the records have different padded lengths.
  """
  task_format = task_records.format_of(serialized[0])
  spec = support_parse_spec(task_format, with_timestamp=_has_timestamp(serialized[0]))
  try:
    return tf.io.parse_example(tf.constant(list(serialized)), spec)
  except tf.errors.InvalidArgumentError as e:
    raise ValueError("task records of one run must share padded lengths (one TaskGen split); "
                     f"expected {task_format}: {e.message}") from e


def adapt_inputs(parsed: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """The `adapt` signature's keyword arguments from `parse_members` output."""
  keys = [features.MEMBER_FEATURES] + [features.side_key(features.SUPPORT, name)
                                      for name in features.INTERACTION_KEYS]
  return {key: parsed[key] for key in keys}


def _as_of(parsed: Mapping[str, tf.Tensor]) -> np.ndarray:
  """Latest real support timestamp per member; 0 without timestamps or support."""
  sizes = parsed[task_records.SUPPORT_SIZE].numpy()
  if SUPPORT_TIMESTAMP not in parsed:
    return np.zeros_like(sizes)
  mask = parsed[features.side_key(features.SUPPORT, features.MASK)].numpy() > 0
  return np.where(mask, parsed[SUPPORT_TIMESTAMP].numpy(), 0).max(axis=1)


class AdaptFn(beam.DoFn):
  """A batch of serialized task records -> one meta-embedding row (dict) per member."""

  def __init__(self, model_dir: str, model_version: str):
    super().__init__()
    self._model_dir = model_dir
    self._model_version = model_version
    self._loaded = None
    self._adapt = None
    self._counters = {name: beam_metric.Metrics.counter(NAMESPACE, name) for name in COUNTERS}

  def setup(self):
    self._loaded, self._adapt = load_adapt(self._model_dir)

  def process(self, batch: List[bytes]) -> Iterable[dict]:
    parsed = parse_members(batch)
    embeddings = self._adapt(**adapt_inputs(parsed))[features.META_EMBEDDING].numpy()
    sizes = parsed[task_records.SUPPORT_SIZE].numpy()
    cap = parsed[features.side_key(features.SUPPORT, features.MASK)].shape[1]
    self._counters[MEMBERS].inc(len(sizes))
    self._counters[EMPTY_SUPPORTS].inc(int((sizes == 0).sum()))
    self._counters[TRUNCATED_SUPPORTS].inc(int((sizes >= cap).sum()))
    keys = parsed[task_records.MEMBER_KEY].numpy()
    for key, embedding, size, as_of in zip(keys, embeddings, sizes, _as_of(parsed)):
      yield {MEMBER_ID: key.decode(), features.META_EMBEDDING: embedding.tolist(),
             SUPPORT_SIZE: int(size), AS_OF_TIMESTAMP: int(as_of),
             MODEL_VERSION: self._model_version}


def to_example(row: Mapping[str, object]) -> bytes:
  """One output row as a serialized `tf.train.Example`."""
  example = tf.train.Example()
  feature = example.features.feature
  # Filling the proto in place is about twice as fast as building `tf.train.Feature`s.
  feature[MEMBER_ID].bytes_list.value.append(row[MEMBER_ID].encode())
  feature[features.META_EMBEDDING].float_list.value.extend(row[features.META_EMBEDDING])
  feature[SUPPORT_SIZE].int64_list.value.append(row[SUPPORT_SIZE])
  feature[AS_OF_TIMESTAMP].int64_list.value.append(row[AS_OF_TIMESTAMP])
  feature[MODEL_VERSION].bytes_list.value.append(row[MODEL_VERSION].encode())
  return example.SerializeToString()


def build_embedding_pipeline(pipeline: beam.Pipeline, model_dir: str,
                             task_files: Sequence[str], output_prefix: str,
                             model_version: str, batch_size: int = 256) -> None:
  """Adds the meta-embeddings transforms to `pipeline`.

  Args:
    pipeline: the Beam pipeline.
    model_dir: the SavedModel (with an `adapt` signature).
    task_files: gzipped task-record files or glob patterns.
    output_prefix: output path prefix; writes `<prefix>-*-of-*.tfrecord.gz`
      and `<prefix>-*-of-*.parquet`.
    model_version: stored with every row.
    batch_size: members per `adapt` call (at most).
  """
  rows = (pipeline
          | "ReadTasks" >> beam.Create(list(task_files))
          | "ReadRecords" >> beam.io.ReadAllFromTFRecord(
              compression_type=beam.io.filesystem.CompressionTypes.GZIP)
          | "Batch" >> beam.BatchElements(min_batch_size=batch_size, max_batch_size=batch_size)
          | "Adapt" >> beam.ParDo(AdaptFn(model_dir, model_version)))
  _ = (rows
       | "ToExample" >> beam.Map(to_example)
       | "WriteTFRecord" >> beam.io.WriteToTFRecord(output_prefix,
                                                    file_name_suffix=TFRECORD_SUFFIX))
  _ = rows | "WriteParquet" >> beam.io.WriteToParquet(
      output_prefix, PARQUET_SCHEMA, file_name_suffix=PARQUET_SUFFIX)


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


def run(model_dir: str, task_files, output_dir: str, model_version: str,
        beam_args: Optional[Sequence[str]] = None, batch_size: int = 256) -> Dict[str, int]:
  """Runs the job (DirectRunner unless `beam_args` name a runner) and returns its counters.

  Args:
    model_dir: the SavedModel (with an `adapt` signature).
    task_files: gzipped task-record files or glob patterns.
    output_dir: receives `meta_embeddings-*.tfrecord.gz` and
      `meta_embeddings-*.parquet`.
    model_version: stored with every row.
    beam_args: Beam pipeline arguments, for example `["--runner=DataflowRunner", ...]`.
    batch_size: members per `adapt` call (at most).

  Returns:
    `{counter: value}` for `COUNTERS`.

  Raises:
    FileNotFoundError: no file matches `task_files`.
    ValueError: the files hold no task record, or `model_dir` is not a
      SavedModel with an `adapt` signature.
  """
  files = task_file_list(task_files)
  check_model_dir(model_dir)
  tf.io.gfile.makedirs(output_dir)
  options = pipeline_options.PipelineOptions(list(beam_args or []))
  pipeline = beam.Pipeline(options=options)
  build_embedding_pipeline(pipeline, model_dir, files, os.path.join(output_dir, OUTPUT_NAME),
                           model_version, batch_size)
  result = pipeline.run()
  result.wait_until_finish()
  return _counters(result)
