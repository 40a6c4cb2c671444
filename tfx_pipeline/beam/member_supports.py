"""Members' support sets from interactions: the meta-embedding job's interactions input.

Two sources, both ending in `(member_key, interaction)` pairs in TaskGen's
per-interaction layout (`task_gen.parse_interaction`):

* `read_transformed`: Transform's `transformed_examples` (gzipped
  `tf.train.Example`s with `member_key`, `member_id`, `item_id`,
  `member_features`, `item_features`, `context_features`, `label`, `timestamp`);
* `read_csv_interactions`: raw interaction CSV files (the raw schema,
  `limaml_keras.schema`; the columns must be exactly the Transform graph's raw
  features; local or mounted paths, `.csv.gz` too), first checked in full by
  `check_csv_input` before the job starts, with the rules of `limaml pipeline
  run` (`limaml_keras.raw_data_checks`: bad values are errors naming file,
  line and column; duplicates across all files and rows later than the as-of
  time are dropped, counted and noted), then read again by the job, which
  drops exactly the rows the check dropped, and transformed in batches by the
  Transform graph (`transform_features_layer`, loaded once per worker in
  `DoFn.setup`), as serving transforms requests.

  Members are left out, counted and noted when every row of theirs was
  dropped (`MEMBERS_ALL_DROPPED`) or when all their rows reference items the
  Transform vocabulary does not know (`MEMBERS_ONLY_UNKNOWN_ITEMS`): an
  embedding adapted on out-of-vocabulary items only is noise, so they keep
  their served embedding (refresh) or the cold-start path (generate).

`support_records` then keeps each member's latest `max_support` interactions
by timestamp with a combiner (`LatestInteractionsFn`: bounded memory per
member, no list of all members anywhere) and emits one support-only task
record per member (`task_records` layout, query side of length 0, plus
`support_timestamp`), which `embedding_job.write_embeddings` adapts. The member's
`member_features` are those of their latest interaction (as TaskGen's).
Ties in time are ordered by the interactions' contents, so the support, and
the job's output, do not depend on input order.

Counter `truncated_supports` (namespace `embedding_job.NAMESPACE`): members
with more than `max_support` interactions.
"""

import dataclasses
from typing import (AbstractSet, Any, Dict, FrozenSet, Iterable, Iterator, List, Mapping,
                    Optional, Sequence, Tuple)

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
#: Counts of `check_csv_input` (with `raw_data_checks.DUPLICATE` and `FUTURE`).
ROWS_READ = "rows_read"
ROWS_KEPT = "rows_kept"
MEMBERS_ALL_DROPPED = "members_all_dropped"
MEMBERS_ONLY_UNKNOWN_ITEMS = "members_only_unknown_items"
_EXAMPLES_IN_NOTES = 3
_ORDER_KEYS = (preprocessing.TIMESTAMP, tensor_layout.ITEM_ID, tensor_layout.LABEL,
               tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES, tensor_layout.MEMBER_FEATURES,
               tensor_layout.MEMBER_ID)


def check_max_support(max_support: int) -> None:
  """Raises ValueError unless `max_support` is a valid `TaskSettings.max_support`."""
  task_settings.DEFAULTS.replace(max_support=max_support)


#: dtype of each `_ORDER_KEYS` feature in an order key (the timestamp is a Python int).
_DTYPES = {tensor_layout.ITEM_ID: np.int64, tensor_layout.MEMBER_ID: np.int64,
           tensor_layout.LABEL: np.float32, tensor_layout.ITEM_FEATURES: np.float32,
           tensor_layout.CONTEXT_FEATURES: np.float32, tensor_layout.MEMBER_FEATURES: np.float32}
#: An interaction as the combiner carries it (`order_key`).
OrderKey = Tuple


def order_key(interaction: Interaction) -> OrderKey:
  """Time first, then the contents: a total order independent of input order.

  The key holds the whole interaction (each feature's bytes), so the
  per-member combiner carries keys, not parsed interactions: the shuffle
  then holds about 200 bytes per interaction instead of ~1,100 for pickled
  arrays (the DirectRunner keeps a shuffle's input in memory).
  `interaction_of` turns a key back into the interaction.
  """
  return tuple(int(interaction[k][0]) if k == preprocessing.TIMESTAMP else
               np.asarray(interaction[k], _DTYPES[k]).tobytes() for k in _ORDER_KEYS)


def interaction_of(key: OrderKey) -> Interaction:
  """The interaction `order_key` encoded."""
  return {k: np.array([value], np.int64) if k == preprocessing.TIMESTAMP else
          np.frombuffer(value, _DTYPES[k]) for k, value in zip(_ORDER_KEYS, key)}


class LatestInteractionsFn(beam.CombineFn):
  """`order_key`s of one member's interactions -> `(count, latest max_support in time order)`."""

  def __init__(self, max_support: int):
    super().__init__()
    check_max_support(max_support)
    self._max_support = max_support

  def create_accumulator(self):
    return 0, []

  def _latest(self, keys: Iterable[OrderKey]) -> List[OrderKey]:
    """The latest `max_support` keys, in time order (the library's rule)."""
    keys = list(keys)
    array = np.empty(len(keys), object)
    array[:] = keys
    return [keys[p] for p in tasks_lib.latest_first(array, self._max_support)]

  def add_input(self, accumulator, key):
    count, latest = accumulator
    latest.append(key)
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
    member_key, (count, latest) = element
    if count > self._max_support:
      self._truncated.inc()
    yield member_key.decode(), support_record(
        member_key, (count, [interaction_of(key) for key in latest]), self._max_support)


def _keyed_order_key(member_key: bytes, interaction: Interaction) -> Tuple[bytes, OrderKey]:
  return member_key, order_key(interaction)


def support_records(interactions: beam.PCollection, max_support: int) -> beam.PCollection:
  """`(member_key, interaction)` pairs -> `(member_id, serialized support record)` per member."""
  check_max_support(max_support)
  return (interactions
          | "OrderKeys" >> beam.MapTuple(_keyed_order_key)
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


def _expand(patterns: Sequence[str]) -> Tuple[List[str], List[str]]:
  """Files matched by `patterns` (a matched directory: its CSVs) and the listing notes."""
  files, notes = [], []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise FileNotFoundError(f"no interaction file matches {pattern!r}")
    for path in matched:
      listed, note = raw_data_checks.list_csv_files(path)
      files.extend(listed)
      notes.extend([note] if note else [])
  return sorted(set(files)), notes


def _examples(members: Iterable[str]) -> str:
  return ", ".join(repr(m) for m in sorted(members)[:_EXAMPLES_IN_NOTES])


@dataclasses.dataclass(frozen=True)
class CsvInput:
  """Raw interaction CSVs checked by `check_csv_input`: what the job reads and reports.

  Attributes:
    files: the CSV files, sorted.
    raw_feature_spec: the Transform graph's raw features.
    report: the checks' report (`as_of` and `duplicate_lines` drive the job's read).
    skipped_members: members whose rows the job leaves out (only unknown items).
    counts: `ROWS_READ`, `ROWS_KEPT`, dropped rows by reason,
      `MEMBERS_ALL_DROPPED`, `MEMBERS_ONLY_UNKNOWN_ITEMS`.
    notes: one line per fallback taken, for the user to read.
  """
  files: Tuple[str, ...]
  raw_feature_spec: Mapping[str, Any]
  report: raw_data_checks.CheckReport
  skipped_members: FrozenSet[str]
  counts: Mapping[str, int]
  notes: Tuple[str, ...]

  def kept_rows(self) -> Iterator[Tuple[int, List[str]]]:
    """`(timestamp, row)` of every row the job reads, in `validation_spec` column order."""
    reader = raw_data_checks.RawCsvReader(validation_spec(self.raw_feature_spec),
                                          self.report.as_of, self.report.duplicate_lines)
    for path in self.files:
      for timestamp, row in reader.rows(path):
        if row[0] not in self.skipped_members:
          yield timestamp, row


def known_items(tft_output: tft.TFTransformOutput) -> FrozenSet[str]:
  """The raw item ids in the Transform graph's item vocabulary."""
  return frozenset(v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in
                   tft_output.vocabulary_by_name(preprocessing.ITEM_VOCABULARY))


def check_csv_input(patterns: Sequence[str], raw_feature_spec: Mapping[str, Any],
                    as_of: Optional[int] = None,
                    known_item_ids: Optional[AbstractSet[str]] = None) -> CsvInput:
  """Expands CSV patterns and checks every row, as `limaml pipeline run` does.

  Args:
    patterns: files, glob patterns or directories (`raw_data_checks.list_csv_files`).
    raw_feature_spec: the Transform graph's raw features (the columns).
    as_of: later interactions are dropped (default: now).
    known_item_ids: the item vocabulary (`known_items`); members whose rows
      all reference other items are skipped. None: no member is skipped.

  Raises:
    FileNotFoundError: a pattern matches no file.
    ValueError: an empty file, a file without data rows, a header with
      missing or unknown columns, a bad value (naming file, line and column),
      or no member left to adapt.
  """
  files, listing_notes = _expand(patterns)
  for path in files:
    unknown = [c for c in raw_data_checks.read_header(path) if c not in raw_feature_spec]
    if unknown:
      raise ValueError(f"{path}: unknown columns {unknown}: the model's Transform graph has "
                       f"raw features {list(raw_feature_spec)}")
  reader = raw_data_checks.RawCsvReader(validation_spec(raw_feature_spec), as_of)
  integer_items = raw_feature_spec[schema.ITEM_ID_COLUMN].dtype != tf.string
  kept_members, members_with_known_items = set(), set()
  for path in files:
    for _, row in reader.rows(path):
      kept_members.add(row[0])
      if known_item_ids is not None and (
          str(int(row[1])) if integer_items else row[1]) in known_item_ids:
        members_with_known_items.add(row[0])
  report = reader.report
  report.listing_notes.extend(listing_notes)
  if not kept_members:
    raise ValueError(f"no interaction left after the checks (dropped: {report.dropped})")
  all_dropped = reader.members_read - kept_members
  skipped = frozenset(() if known_item_ids is None else kept_members - members_with_known_items)
  notes = report.notes()
  if all_dropped:
    notes.append(f"{len(all_dropped)} member(s) had every row dropped (no embedding for "
                 f"them), e.g. {_examples(all_dropped)}")
  if skipped:
    notes.append(f"skipped {len(skipped)} member(s) whose interactions all reference items "
                 "unknown to the model (an embedding adapted on out-of-vocabulary items only "
                 "would be noise; they keep their served embedding or the cold-start path), "
                 f"e.g. {_examples(skipped)}")
  if skipped == kept_members:
    raise ValueError("no member left to adapt: " + notes[-1])
  counts = {ROWS_READ: report.rows_read, ROWS_KEPT: report.rows_kept,
            raw_data_checks.DUPLICATE: report.dropped.get(raw_data_checks.DUPLICATE, 0),
            raw_data_checks.FUTURE: report.dropped.get(raw_data_checks.FUTURE, 0),
            MEMBERS_ALL_DROPPED: len(all_dropped), MEMBERS_ONLY_UNKNOWN_ITEMS: len(skipped)}
  return CsvInput(files=tuple(files), raw_feature_spec=dict(raw_feature_spec), report=report,
                  skipped_members=skipped, counts=counts, notes=tuple(notes))


class _ReadCsvFn(beam.DoFn):
  """A CSV path -> raw `tf.train.Example`s of the rows `CsvInput` keeps."""

  def __init__(self, csv_input: CsvInput):
    super().__init__()
    self._input = csv_input

  def process(self, path: str) -> Iterator[bytes]:
    raw_spec = self._input.raw_feature_spec
    columns = validation_spec(raw_spec).all_columns()
    reader = raw_data_checks.RawCsvReader(validation_spec(raw_spec), self._input.report.as_of,
                                          self._input.report.duplicate_lines)
    for _, row in reader.rows(path):
      if row[0] not in self._input.skipped_members:
        yield serving_contract.raw_example(dict(zip(columns, row)), raw_spec).SerializeToString()


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


def read_csv_interactions(pipeline: beam.Pipeline, csv_input: CsvInput,
                          transform_graph_dir: str, batch_size: int = 1024
                          ) -> beam.PCollection:
  """`(member_key, interaction)` pairs of raw CSV files transformed by the Transform graph.

  Args:
    pipeline: the Beam pipeline.
    csv_input: the files checked by `check_csv_input` (a file is read by one
      worker; it drops the rows the check dropped).
    transform_graph_dir: the Transform component's `transform_graph`.
    batch_size: rows per Transform call.
  """
  return (pipeline
          | "CsvFiles" >> beam.Create(list(csv_input.files))
          | "SpreadCsvFiles" >> beam.Reshuffle()
          | "ReadCsv" >> beam.ParDo(_ReadCsvFn(csv_input))
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
  members = (support_records(interactions, max_support)
             | "BatchMembers" >> beam.BatchElements(min_batch_size=batch_size,
                                                    max_batch_size=max(batch_size, 1024))
             | "ParseMembers" >> beam.Map(
                 lambda batch: embedding_job.member_columns([record for _, record in batch])))
  embedding_job.write_embeddings(members, model_dir, directory, model_version, batch_size,
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
            rows_per_shard: int = embedding_job.DEFAULT_ROWS_PER_SHARD,
            as_of: Optional[int] = None, csv_input: Optional[CsvInput] = None
            ) -> Dict[str, Any]:
  """The embedding job on raw interaction CSVs (see `embedding_job.run` for the output).

  Args:
    csv_patterns: files, glob patterns or directories of raw interaction CSVs.
    as_of: later interactions are dropped (default: now).
    csv_input: the patterns already checked by `check_csv_input` (then
      `csv_patterns` and `as_of` are not used).
    (the others: see `embedding_job.run`)

  Returns:
    The job's counters, `CsvInput.counts` and `"notes"` (`CsvInput.notes`).

  Raises:
    FileNotFoundError: a pattern matches no file.
    ValueError: bad files (empty, missing or unknown columns, bad values, naming
      file, line and column), a model without `adapt`, a non-empty output.
  """
  if csv_input is None:
    tft_output = tft.TFTransformOutput(transform_graph_dir)
    csv_input = check_csv_input(list(csv_patterns), tft_output.raw_feature_spec(), as_of,
                                known_items(tft_output))
  counters = _run(lambda p: read_csv_interactions(p, csv_input, transform_graph_dir), model_dir,
                  output_dir, model_version, max_support, beam_args, batch_size, rows_per_shard)
  return {**counters, **csv_input.counts, "notes": list(csv_input.notes)}


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
