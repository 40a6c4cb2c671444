"""Members' support sets from interactions: the meta-embedding job's interactions input.

Two sources, both ending in `(member_key, interaction)` pairs in TaskGen's
per-interaction layout (`task_gen.parse_interaction`):

* `read_transformed`: Transform's `transformed_examples` (gzipped
  `tf.train.Example`s with `member_key`, `member_id`, `item_id`,
  `member_features`, `item_features`, `context_features`, `label`, `timestamp`);
* `read_raw_csv`: raw interaction CSV files (the raw schema,
  `limaml_keras.schema`; the columns must be exactly the Transform graph's raw
  features), checked row by row by `limaml_keras.raw_data_checks.RawCsvReader`
  (the rules of `limaml pipeline run`: duplicates within a file and future
  rows dropped; it reads local or mounted paths only) and transformed in batches by the Transform graph (`transform_features_layer`,
  loaded once per worker in `DoFn.setup`), as serving transforms requests.

`support_records` then keeps each member's latest `max_support` interactions
by timestamp with a combiner (`LatestInteractionsFn`: bounded memory per
member, no list of all members anywhere) and emits one support-only task
record per member (`task_records` layout, query side of length 0, plus
`support_timestamp`), which `embedding_job.AdaptFn` consumes. The member's
`member_features` are those of their latest interaction (as TaskGen's).
Ties in time are ordered by the interactions' contents, so the support, and
the job's output, do not depend on input order.

Counter `truncated_supports` (namespace `embedding_job.NAMESPACE`): members
with more than `max_support` interactions.
"""

import csv
from typing import Dict, Iterable, Iterator, List, Mapping, Sequence, Tuple

import apache_beam as beam
from apache_beam.metrics import metric as beam_metric
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from limaml_keras import tasks as tasks_lib
from limaml_keras import tensor_layout
from limaml_keras import raw_data_checks
from limaml_keras import schema
from limaml_keras import task_settings
from tfx_pipeline.beam import embedding_job
from limaml_keras import serving_contract
from tfx_pipeline.models import export
from tfx_pipeline.models import preprocessing
from tfx_pipeline.components import task_gen
from tfx_pipeline.components import task_records

Interaction = Dict[str, np.ndarray]
#: Transformed features an interaction needs (TaskGen's).
TRANSFORMED_KEYS = (preprocessing.MEMBER_KEY, tensor_layout.MEMBER_ID, tensor_layout.ITEM_ID,
                    tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES,
                    tensor_layout.CONTEXT_FEATURES, tensor_layout.LABEL, preprocessing.TIMESTAMP)
_INTERACTION_KEYS = TRANSFORMED_KEYS[1:]
_ORDER_KEYS = (preprocessing.TIMESTAMP, tensor_layout.ITEM_ID, tensor_layout.LABEL,
               tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES, tensor_layout.MEMBER_FEATURES,
               tensor_layout.MEMBER_ID)


def check_max_support(max_support: int) -> None:
  """Raises ValueError unless `max_support` is a valid `TaskSettings.max_support`."""
  task_settings.DEFAULTS.replace(max_support=max_support)


def order_key(interaction: Interaction) -> Tuple:
  """Time first, then the contents: a total order independent of input order."""
  return tuple(interaction[k].tobytes() if k != preprocessing.TIMESTAMP else
               int(interaction[k][0]) for k in _ORDER_KEYS)


class LatestInteractionsFn(beam.CombineFn):
  """Interactions of one member -> `(count, latest max_support in time order)`."""

  def __init__(self, max_support: int):
    super().__init__()
    check_max_support(max_support)
    self._max_support = max_support

  def create_accumulator(self):
    return 0, []

  def _latest(self, interactions: Iterable[Interaction]) -> List[Interaction]:
    """The latest `max_support` by `order_key`, in time order (the library's rule)."""
    interactions = list(interactions)
    keys = np.empty(len(interactions), object)
    keys[:] = [order_key(i) for i in interactions]
    return [interactions[p] for p in tasks_lib.latest_first(keys, self._max_support)]

  def add_input(self, accumulator, interaction):
    count, latest = accumulator
    latest.append(interaction)
    if len(latest) > 2 * self._max_support:  # Amortised trimming.
      latest = self._latest(latest)
    return count + 1, latest

  def merge_accumulators(self, accumulators):
    accumulators = list(accumulators)
    return (sum(count for count, _ in accumulators),
            self._latest(i for _, latest in accumulators for i in latest))

  def compact(self, accumulator):
    return accumulator[0], self._latest(accumulator[1])

  def extract_output(self, accumulator):
    count, latest = accumulator
    return count, self._latest(latest)


def support_record(member_key: bytes, count_and_latest: Tuple[int, Sequence[Interaction]],
                   max_support: int) -> bytes:
  """One member's support-only task record, padded to `max_support`.

  Args:
    member_key: the raw member id.
    count_and_latest: `LatestInteractionsFn` output (at least one interaction).
    max_support: the padded support length.

  Returns:
    The serialized record: `task_records.encode` with a query side of length 0
    plus `embedding_job.SUPPORT_TIMESTAMP`.
  """
  _, latest = count_and_latest
  size = len(latest)
  last = latest[-1]
  task = {tensor_layout.MEMBER_ID: last[tensor_layout.MEMBER_ID][0],
          tensor_layout.MEMBER_FEATURES: last[tensor_layout.MEMBER_FEATURES]}
  for name, key in ((tensor_layout.ITEM_ID, tensor_layout.ITEM_ID),
                    (tensor_layout.ITEM_FEATURES, tensor_layout.ITEM_FEATURES),
                    (tensor_layout.CONTEXT_FEATURES, tensor_layout.CONTEXT_FEATURES),
                    (tensor_layout.LABEL, tensor_layout.LABEL)):
    values = np.stack([i[key] for i in latest]) if name in (
        tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES) else np.concatenate(
            [i[key] for i in latest])
    padded = np.zeros((max_support,) + values.shape[1:], values.dtype)
    padded[:size] = values
    task[tensor_layout.side_key(tensor_layout.SUPPORT, name)] = padded
    task[tensor_layout.side_key(tensor_layout.QUERY, name)] = padded[:0]
  mask = (np.arange(max_support) < size).astype(np.float32)
  task[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.MASK)] = mask
  task[tensor_layout.side_key(tensor_layout.QUERY, tensor_layout.MASK)] = mask[:0]
  timestamps = np.zeros(max_support, np.int64)
  timestamps[:size] = np.concatenate([i[preprocessing.TIMESTAMP] for i in latest])
  timestamp = tf.train.Example()
  timestamp.features.feature[embedding_job.SUPPORT_TIMESTAMP].int64_list.value.extend(timestamps)
  # Serialized protobuf messages merge when concatenated: this adds the timestamp
  # feature to the record without parsing it again.
  return (task_records.encode(task, member_key, size, 0) + timestamp.SerializeToString())


class _SupportRecordFn(beam.DoFn):
  """(member_key, LatestInteractionsFn output) -> support record; counts truncation."""

  def __init__(self, max_support: int):
    super().__init__()
    self._max_support = max_support
    self._truncated = beam_metric.Metrics.counter(embedding_job.NAMESPACE,
                                                  embedding_job.TRUNCATED_SUPPORTS)

  def process(self, element):
    member_key, count_and_latest = element
    if count_and_latest[0] > self._max_support:
      self._truncated.inc()
    yield member_key.decode(), support_record(member_key, count_and_latest, self._max_support)


def support_records(interactions: beam.PCollection, max_support: int) -> beam.PCollection:
  """`(member_key, interaction)` pairs -> `(member_id, serialized support record)` per member."""
  check_max_support(max_support)
  return (interactions
          | "LatestPerMember" >> beam.CombinePerKey(LatestInteractionsFn(max_support))
          | "SupportRecords" >> beam.ParDo(_SupportRecordFn(max_support)))


# Transformed examples.


def parse_transformed(serialized: bytes) -> Tuple[bytes, Interaction]:
  """A transformed `tf.train.Example` -> `(member_key, interaction)`.

  Raises:
    ValueError: naming the transformed features the example lacks.
  """
  example = tf.train.Example.FromString(serialized)
  missing = [k for k in TRANSFORMED_KEYS if k not in example.features.feature]
  if missing:
    raise ValueError(f"transformed example lacks features {missing} (has "
                     f"{sorted(example.features.feature)}); expected Transform's "
                     "transformed_examples of this pipeline")
  return task_gen.parse_interaction(serialized)


def transformed_files(patterns: Sequence[str]) -> List[str]:
  """Expands patterns of transformed-example files; FileNotFoundError when none match."""
  files = sorted({f for p in patterns for f in tf.io.gfile.glob(p)
                  if not tf.io.gfile.isdir(f)})
  if not files:
    raise FileNotFoundError(f"no transformed example files match {list(patterns)}")
  return files


def read_transformed(pipeline: beam.Pipeline, files: Sequence[str]) -> beam.PCollection:
  """`(member_key, interaction)` pairs of transformed-example files (compression by suffix)."""
  return (pipeline
          | "TransformedFiles" >> beam.Create(list(files))
          | "ReadTransformed" >> beam.io.ReadAllFromTFRecord()
          | "ParseTransformed" >> beam.Map(parse_transformed))


# Raw CSV files.


def validation_spec(raw_feature_spec: Mapping[str, object]) -> schema.FeatureSpec:
  """A `FeatureSpec` for `raw_data_checks`' row checks of the raw feature columns.

  Numeric (float and integer) raw features are checked as numbers, string
  features as categories; sides do not matter for validation.
  """
  columns = [c for c in raw_feature_spec if c not in schema.KEY_COLUMNS]
  numeric = tuple(c for c in columns if raw_feature_spec[c].dtype != tf.string)
  categorical = tuple(c for c in columns if raw_feature_spec[c].dtype == tf.string)
  return schema.FeatureSpec(member_numeric=numeric, member_categorical=categorical)


def _read_header(path: str) -> Tuple[List[str], bool]:
  """The header of a CSV file and whether a data row follows it."""
  with tf.io.gfile.GFile(path, "r") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    has_row = any(row for row in reader)
  return header, has_row


def check_csv_files(patterns: Sequence[str],
                    raw_feature_spec: Mapping[str, object]) -> List[str]:
  """Expands CSV patterns and checks every header against the raw feature spec.

  The rows are checked while the job reads them (`RawCsvReader`).

  Raises:
    FileNotFoundError: a pattern matches no file.
    ValueError: an empty file, a file without data rows, or a header with
      missing or unknown columns (naming the file and the columns).
  """
  files = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise FileNotFoundError(f"no interaction file matches {pattern!r}")
    files.extend(matched)
  spec = validation_spec(raw_feature_spec)
  for path in files:
    header, has_row = _read_header(path)
    if not header:
      raise ValueError(f"{path}: the file is empty (no header)")
    unknown = [c for c in header if c not in raw_feature_spec]
    if unknown:
      raise ValueError(f"{path}: unknown columns {unknown}: the model's Transform graph has "
                       f"raw features {list(raw_feature_spec)}")
    raw_data_checks.HeaderChecks(path, header, spec)  # Missing or duplicated columns.
    if not has_row:
      raise ValueError(f"{path}: no data rows")
  return sorted(set(files))


class _ReadCsvFn(beam.DoFn):
  """A CSV path -> validated raw `tf.train.Example`s (one per kept row)."""

  def __init__(self, raw_feature_spec: Mapping[str, object]):
    super().__init__()
    self._raw_spec = dict(raw_feature_spec)

  def process(self, path: str) -> Iterator[bytes]:
    spec = validation_spec(self._raw_spec)
    columns = spec.all_columns()
    for _, row in raw_data_checks.RawCsvReader(spec).rows(path):
      yield serving_contract.raw_example(dict(zip(columns, row)), self._raw_spec).SerializeToString()


class _TransformFn(beam.DoFn):
  """A batch of raw `tf.train.Example`s -> `(member_key, interaction)` per row."""

  def __init__(self, transform_graph_dir: str):
    super().__init__()
    self._transform_graph_dir = transform_graph_dir
    self._layer = None
    self._raw_spec = None

  def setup(self):
    tft_output = tft.TFTransformOutput(self._transform_graph_dir)
    self._layer = tft_output.transform_features_layer()
    self._raw_spec = tft_output.raw_feature_spec()

  def process(self, batch: Sequence[bytes]) -> Iterator[Tuple[bytes, Interaction]]:
    transformed = export.transform_requests(self._layer, self._raw_spec,
                                            tf.constant(list(batch)))
    columns = {k: transformed[k].numpy() for k in TRANSFORMED_KEYS}
    columns = {k: v.reshape(len(batch), -1) for k, v in columns.items()}
    for j, member_key in enumerate(columns[preprocessing.MEMBER_KEY][:, 0]):
      yield member_key, {k: columns[k][j] for k in _INTERACTION_KEYS}


def read_raw_csv(pipeline: beam.Pipeline, files: Sequence[str], transform_graph_dir: str,
                 batch_size: int = 1024) -> beam.PCollection:
  """`(member_key, interaction)` pairs of raw CSV files transformed by the Transform graph.

  Args:
    pipeline: the Beam pipeline.
    files: CSV files checked by `check_csv_files` (a file is read by one worker).
    transform_graph_dir: the Transform component's `transform_graph`.
    batch_size: rows per Transform call.
  """
  raw_spec = tft.TFTransformOutput(transform_graph_dir).raw_feature_spec()
  return (pipeline
          | "CsvFiles" >> beam.Create(list(files))
          | "SpreadCsvFiles" >> beam.Reshuffle()
          | "ReadCsv" >> beam.ParDo(_ReadCsvFn(raw_spec))
          | "BatchRaw" >> beam.BatchElements(min_batch_size=batch_size,
                                             max_batch_size=batch_size)
          | "Transform" >> beam.ParDo(_TransformFn(transform_graph_dir)))


def build_interactions_pipeline(pipeline: beam.Pipeline, interactions: beam.PCollection,
                                model_dir: str, directory: str, model_version: str,
                                max_support: int, batch_size: int = 256,
                                rows_per_shard: int = embedding_job.DEFAULT_ROWS_PER_SHARD
                                ) -> None:
  """Support records of `interactions` -> the embedding job's output in `directory`."""
  del pipeline  # The interactions are already part of it.
  batches = (support_records(interactions, max_support)
             | "BatchMembers" >> beam.BatchElements(min_batch_size=batch_size,
                                                    max_batch_size=max(batch_size, 1024)))
  embedding_job.write_embeddings(batches, model_dir, directory, model_version, batch_size,
                                 rows_per_shard, count_truncated=False)


def _run(source, model_dir, output_dir, model_version, max_support, beam_args, batch_size,
         rows_per_shard, pipeline=None) -> Dict[str, int]:
  embedding_job.check_job_arguments(batch_size, rows_per_shard)
  check_max_support(max_support)
  embedding_job.check_model_dir(model_dir)
  embedding_job.check_output_dir(output_dir)

  def build(beam_pipeline, stage):
    build_interactions_pipeline(beam_pipeline, source(beam_pipeline), model_dir, stage,
                                model_version, max_support, batch_size, rows_per_shard)

  return embedding_job.run_pipeline(pipeline or embedding_job.make_pipeline(beam_args), build,
                                    output_dir)


def run_csv(model_dir: str, transform_graph_dir: str, csv_patterns: Sequence[str],
            output_dir: str, model_version: str,
            max_support: int = task_settings.DEFAULTS.max_support,
            beam_args: Sequence[str] = (), batch_size: int = 256,
            rows_per_shard: int = embedding_job.DEFAULT_ROWS_PER_SHARD) -> Dict[str, int]:
  """The embedding job on raw interaction CSVs (see `embedding_job.run` for the output).

  Raises:
    FileNotFoundError: a pattern matches no file.
    ValueError: bad files (empty, missing or unknown columns, bad values, naming
      file, line and column), a model without `adapt`, a non-empty output.
  """
  tft_output = tft.TFTransformOutput(transform_graph_dir)
  files = check_csv_files(list(csv_patterns), tft_output.raw_feature_spec())
  return _run(lambda p: read_raw_csv(p, files, transform_graph_dir), model_dir, output_dir,
              model_version, max_support, beam_args, batch_size, rows_per_shard)


def run_transformed(model_dir: str, patterns: Sequence[str], output_dir: str,
                    model_version: str,
                    max_support: int = task_settings.DEFAULTS.max_support,
                    beam_args: Sequence[str] = (),
                    batch_size: int = 256,
                    rows_per_shard: int = embedding_job.DEFAULT_ROWS_PER_SHARD,
                    pipeline: beam.Pipeline = None) -> Dict[str, int]:
  """The embedding job on Transform's transformed examples (files or glob patterns).

  `pipeline` (for example the one TFX gives a component) replaces `beam_args`.
  """
  files = transformed_files(list(patterns))
  return _run(lambda p: read_transformed(p, files), model_dir, output_dir, model_version,
              max_support, beam_args, batch_size, rows_per_shard, pipeline)
