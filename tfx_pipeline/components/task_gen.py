"""TaskGen: a Beam component that turns transformed interactions into MAML tasks.

Input: Transform's `transformed_examples` with a `train` split (the training
period) and an `eval` split (the later evaluation period). Output: an
`Examples` artifact with the same splits, one task record per member
(`tfx_pipeline.components.task_records`), plus `task_statistics.json` at its root.

Per member, interactions ordered by time, ties by item id and label; the
recipe is the library's (`limaml_keras.tasks`, settings
`limaml_keras.task_settings.TaskSettings`), so the pipeline and the offline
evaluation train on the same tasks:

* train split: `limaml_keras.tasks.training_tasks` on the member's
  training-period interactions: consecutive windows of `window`
  interactions, each one task (the earlier `support_fraction` support, the
  rest query; or, with `task_history=h`, the whole window as query and the
  member's h previous interactions as support), so every training-period
  interaction reaches the Trainer as a target;
  members with fewer than `min_interactions` are dropped. Records are padded
  to a full window's support and query sizes.
* eval split: support = the member's latest `max_support` training-period
  interactions (what is known before the cutoff), query = the earliest
  `max_query` of their evaluation-period interactions, padded to exactly
  those lengths. Members without training-period interactions are
  cold-start tasks (support all padding); members without evaluation-period
  interactions have nothing to score and get no eval task. A member's cost
  is one sort of their timestamps plus the capped rows.

Idempotent: the records depend only on the input examples and the settings
(not on the order Beam groups them in), so a rerun writes the same set of
records and the same `task_statistics.json`; records are not sorted across
shards, so compare them as a set (`read_records`).
"""

import dataclasses
import json
import os
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils

from limaml_keras import tensor_layout
from limaml_keras import tasks as tasks_lib
from limaml_keras.task_settings import DEFAULTS, TaskSettings
from tfx_pipeline.beam import grouped_records
from tfx_pipeline.components import task_records

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
STATISTICS_FILE = "task_statistics.json"
_RECORD_PREFIX = "data_tfrecord"
#: Training windows of one member built together (bounds TaskGen's memory per member).
WINDOWS_PER_BATCH = 64
_SUMMARY = "summary"

# Transformed features a task needs, and their kind in the tf.Example.
_FLOAT_KEYS = (tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES,
               tensor_layout.LABEL)
_INT_KEYS = (tensor_layout.MEMBER_ID, tensor_layout.ITEM_ID, tensor_layout.TIMESTAMP)
_MATRIX_KEYS = (tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES)
_Interaction = Dict[str, np.ndarray]
#: A member's interactions are ordered by these (ties broken by the later keys).
_SORT_KEYS = (tensor_layout.TIMESTAMP, tensor_layout.ITEM_ID, tensor_layout.LABEL)


def parse_interaction(serialized: bytes) -> Tuple[bytes, _Interaction]:
  """A transformed tf.Example -> `(member_key, {feature: numpy value})`."""
  feature = tf.train.Example.FromString(serialized).features.feature
  values = {k: np.asarray(feature[k].float_list.value, np.float32) for k in _FLOAT_KEYS}
  values.update({k: np.asarray(feature[k].int64_list.value, np.int64) for k in _INT_KEYS})
  return feature[tensor_layout.MEMBER_KEY].bytes_list.value[0], values


def member_keyed(serialized: bytes) -> Tuple[bytes, bytes]:
  """A transformed tf.Example -> `(member_key, the same serialized bytes)`.

  TaskGen groups these, not parsed interactions: the member shuffle then
  holds each interaction as its compact record (~290 bytes on the synthetic
  data, against ~1,100 for the pickled arrays of `parse_interaction`),
  packed and compressed per member and bundle (`grouped_records`), which is
  what the DirectRunner keeps in memory; after grouping they are parsed
  as they are read (`SerializedInteractions`).
  """
  feature = tf.train.Example.FromString(serialized).features.feature
  return feature[tensor_layout.MEMBER_KEY].bytes_list.value[0], serialized


def _stack(interactions: List[_Interaction],
           keys: Sequence[str] = _FLOAT_KEYS + _INT_KEYS) -> Dict[str, np.ndarray]:
  """Parsed interactions -> per-interaction arrays in the layout `tasks_lib.build_tasks` takes."""
  return {key: (np.stack if key in _MATRIX_KEYS else np.concatenate)(
      [interaction[key] for interaction in interactions]) for key in keys}


def _rows(interactions: Sequence[_Interaction], indices: np.ndarray, member_key: bytes,
          order_key: np.ndarray) -> Dict[str, np.ndarray]:
  """The interactions at `indices`, stacked, with `order_key` as their timestamps."""
  if isinstance(interactions, SerializedInteractions):
    arrays = interactions.stacked(indices)
  else:
    arrays = _stack([interactions[i] for i in indices])
  arrays[tensor_layout.TIMESTAMP] = order_key
  arrays[tensor_layout.MEMBER_KEY] = np.full(len(indices), member_key, dtype=object)
  return arrays


class SerializedInteractions(Sequence):
  """A member's serialized records as a sequence of `parse_interaction` dicts.

  The records are kept as they are (compact) and parsed in batches when
  needed: `stacked` parses the rows of one batch of windows with one
  `tf.io.parse_example` call, and `sort_keys` reads three features in chunks,
  so memory stays one batch of windows however many records a member has.
  """

  #: Records parsed per `tf.io.parse_example` call by `sort_keys`.
  CHUNK = 8192
  #: Fewer records than this are parsed one by one in Python: a TF op call
  #: costs about a millisecond, ~20 records' worth (most members are small).
  MIN_BATCH_PARSE = 64

  def __init__(self, records: Iterable[bytes]):
    self._records = list(records)
    self._widths: Optional[Dict[str, int]] = None

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> _Interaction:
    return parse_interaction(self._records[index])[1]

  def __add__(self, other: "SerializedInteractions") -> "SerializedInteractions":
    return SerializedInteractions(self._records + other._records)

  def _feature_widths(self) -> Dict[str, int]:
    """Values per interaction of each feature, read from the first record."""
    if self._widths is None:
      first = parse_interaction(self._records[0])[1]
      self._widths = {key: first[key].size for key in _FLOAT_KEYS + _INT_KEYS}
    return self._widths

  def _parsed(self, records: List[bytes], keys: Sequence[str]) -> Dict[str, np.ndarray]:
    """`keys` of `records`: [n, width] for the matrix features, [n] for the others.

    Raises:
      ValueError: when the records do not all have the first record's widths.
    """
    try:
      if 0 < len(records) < self.MIN_BATCH_PARSE:
        return _stack([parse_interaction(record)[1] for record in records], keys)
      widths = self._feature_widths()
      spec = {key: tf.io.FixedLenFeature([widths[key]],
                                         tf.float32 if key in _FLOAT_KEYS else tf.int64)
              for key in keys if widths[key]}
      parsed = tf.io.parse_example(records, spec) if spec and records else {}
    except (ValueError, tf.errors.InvalidArgumentError) as error:
      raise ValueError("TaskGen: a member's transformed records do not all have the widths of "
                       f"the first one ({self._feature_widths()}): {error}") from None
    arrays = {}
    for key in keys:
      width = widths[key]
      value = (parsed[key].numpy() if key in parsed else
               np.zeros((len(records), width), np.float32 if key in _FLOAT_KEYS else np.int64))
      arrays[key] = value if key in _MATRIX_KEYS else value.reshape(len(records))
    return arrays

  def stacked(self, indices: Sequence[int]) -> Dict[str, np.ndarray]:
    """The records at `indices`, parsed and stacked (`_stack`'s layout)."""
    return self._parsed([self._records[i] for i in indices], _FLOAT_KEYS + _INT_KEYS)

  def sort_keys(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(timestamps, item ids, labels), parsed `CHUNK` records at a time."""
    chunks = [self._parsed(self._records[start:start + self.CHUNK], _SORT_KEYS)
              for start in range(0, len(self._records), self.CHUNK)]
    return tuple(np.concatenate([chunk[key] for chunk in chunks]) if chunks else
                 np.zeros(0) for key in _SORT_KEYS)


def _sort_keys(interactions: Sequence[_Interaction]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(timestamps, item ids, labels) of each interaction."""
  if isinstance(interactions, SerializedInteractions):
    return interactions.sort_keys()
  if not interactions:
    return tuple(np.zeros(0) for _ in _SORT_KEYS)
  stacked = _stack(list(interactions), _SORT_KEYS)
  return tuple(stacked[key] for key in _SORT_KEYS)


def _time_ranks(interactions: Sequence[_Interaction]) -> np.ndarray:
  """0..n-1 in time order; ties are ordered by item id, then label.

  Not by input order: Beam delivers a member's interactions in no fixed
  order, and the output must not depend on it. Keeps only the three sort keys.
  """
  timestamps, items, labels = _sort_keys(interactions)
  order = np.lexsort((labels, items, timestamps))
  ranks = np.empty(len(order), np.int64)
  ranks[order] = np.arange(len(order))
  return ranks


def _encoded(tasks: tasks_lib.Tasks, member_key: bytes) -> Iterable[bytes]:
  """One task record per task of `tasks` (all of the member `member_key`)."""
  for t in range(len(tasks)):
    yield task_records.encode({k: v[t] for k, v in tasks.arrays.items()}, member_key,
                              int(tasks.support_sizes[t]), int(tasks.query_sizes[t]))


def _capped_task(member_key: bytes, interactions: List[_Interaction], order_key: np.ndarray,
                 support_size: int, settings: TaskSettings) -> tasks_lib.Tasks:
  """The task whose support is the interactions with `order_key < support_size`.

  Only the interactions the caps keep (the latest `max_support` of support,
  the earliest `max_query` of query) are stacked, so a member with 100,000
  interactions costs one sort of their order keys, not 100,000 rows of
  feature arrays; the capped counts still cover everything left out.
  """
  keep = np.flatnonzero((order_key >= support_size - settings.max_support) &
                        (order_key < support_size + settings.max_query))
  task = tasks_lib.build_tasks(
      _rows(interactions, keep, member_key, order_key[keep]),
      cutoff_time=support_size, max_support=settings.max_support, max_query=settings.max_query)
  task = tasks_lib.pad_sides(task, settings.max_support, settings.max_query)
  query_size = len(interactions) - support_size
  return dataclasses.replace(task, capped_interactions={
      tensor_layout.SUPPORT: support_size - int(task.support_sizes[0]),
      tensor_layout.QUERY: query_size - int(task.query_sizes[0])})


def train_tasks(member_key: bytes, train: Sequence[_Interaction], settings: TaskSettings,
                ranks: Optional[np.ndarray] = None) -> Iterator[tasks_lib.Tasks]:
  """The member's training tasks (`limaml_keras.tasks.training_tasks`), in batches of windows.

  Nothing when the member has fewer than `settings.min_interactions`
  training-period interactions. The windows of `training_tasks` are
  consecutive runs of `window` interactions in time order, so the member's
  interactions are sorted once and up to `WINDOWS_PER_BATCH` windows are
  built at a time: memory is one sort plus one batch of windows, however
  long the member's history. `ranks`: `_time_ranks(train)` when the caller
  has it.
  """
  if not train or len(train) < settings.min_interactions:
    return
  ranks = _time_ranks(train) if ranks is None else ranks
  order = np.argsort(ranks)
  per_window = dataclasses.replace(settings, min_interactions=1)
  step = settings.window * WINDOWS_PER_BATCH
  # History tasks read the interactions before their window: each batch also
  # gets the whole windows that hold its first window's history, whose own
  # tasks (already made by the previous batch) are then left out.
  context = -(-settings.task_history // settings.window) * settings.window
  for start in range(0, len(order), step):
    begin = max(0, start - context)
    rows = order[begin:start + step]
    tasks = tasks_lib.training_tasks(_rows(train, rows, member_key, ranks[rows]),
                                     per_window)
    if begin < start:
      window_index = np.array([int(key.rsplit("#", 1)[1]) for key in tasks.member_ids])
      tasks = tasks.select(window_index >= (start - begin) // settings.window)
    yield tasks


def eval_task(member_key: bytes, train: Sequence[_Interaction],
              evaluation: Sequence[_Interaction], settings: TaskSettings,
              train_ranks: Optional[np.ndarray] = None) -> Optional[tasks_lib.Tasks]:
  """The member's evaluation task, or None when it has no evaluation interaction.

  `train_ranks`: `_time_ranks(train)` when the caller has it.
  """
  if not evaluation:
    return None
  # Rank time within each period and put the periods one after the other, so
  # the split follows the periods even when their timestamps overlap.
  if train_ranks is None:
    train_ranks = _time_ranks(train) if train else np.zeros(0, np.int64)
  order_key = np.concatenate([train_ranks,
                              len(train) + _time_ranks(evaluation)])
  return _capped_task(member_key, train + evaluation, order_key, len(train), settings)


class _MakeTasks(beam.DoFn):
  """(member_key, {split: serialized interactions}) -> task records by split, and summaries."""

  def __init__(self, settings: TaskSettings):
    super().__init__()
    self._settings = settings

  def process(self, element):
    member_key, grouped = element
    train = SerializedInteractions(grouped[TRAIN_SPLIT])
    evaluation = SerializedInteractions(grouped[EVAL_SPLIT])
    ranks = _time_ranks(train)  # Sorted once for both splits.
    made = ((TRAIN_SPLIT, train_tasks(member_key, train, self._settings, ranks),
             "too_few_interactions"),
            (EVAL_SPLIT, _optional(eval_task(member_key, train, evaluation, self._settings,
                                             ranks)), "no_query"))
    for split, batches, reason in made:
      empty = True
      for tasks in batches:
        empty = False
        yield from self._outputs(split, member_key, tasks)
      if empty:
        yield beam.pvalue.TaggedOutput(_SUMMARY, (split, {"dropped": reason}))

  @staticmethod
  def _outputs(split: str, member_key: bytes, tasks: tasks_lib.Tasks):
    """Task records of `split` and their summaries."""
    for record in _encoded(tasks, member_key):
      yield beam.pvalue.TaggedOutput(split, record)
    lengths = [tasks.arrays[tensor_layout.side_key(side, tensor_layout.MASK)].shape[1]
               for side in (tensor_layout.SUPPORT, tensor_layout.QUERY)]
    for t in range(len(tasks)):
      yield beam.pvalue.TaggedOutput(_SUMMARY, (split, {
          "support": int(tasks.support_sizes[t]), "query": int(tasks.query_sizes[t]),
          "lengths": lengths,
          "capped_support": tasks.capped_interactions[tensor_layout.SUPPORT] if t == 0 else 0,
          "capped_query": tasks.capped_interactions[tensor_layout.QUERY] if t == 0 else 0}))


def _optional(tasks: Optional[tasks_lib.Tasks]) -> List[tasks_lib.Tasks]:
  return [] if tasks is None else [tasks]


class _TaskStatisticsFn(beam.CombineFn):
  """Summaries of one split -> task counts and support/query size histograms."""

  def __init__(self, settings: TaskSettings):
    super().__init__()
    self._settings = settings

  def create_accumulator(self):
    # Histograms grow to the split's padded lengths + 1 (a count per size).
    return {"tasks": 0, "dropped_members": {}, "capped_interactions": [0, 0],
            "support": [], "query": []}

  def add_input(self, accumulator, summary):
    if "dropped" in summary:
      dropped = accumulator["dropped_members"]
      dropped[summary["dropped"]] = dropped.get(summary["dropped"], 0) + 1
      return accumulator
    accumulator["tasks"] += 1
    for key, length in zip(("support", "query"), summary["lengths"]):
      histogram = _grown(accumulator[key], length + 1)
      histogram[summary[key]] += 1
    accumulator["capped_interactions"][0] += summary["capped_support"]
    accumulator["capped_interactions"][1] += summary["capped_query"]
    return accumulator

  def merge_accumulators(self, accumulators):
    merged = self.create_accumulator()
    for accumulator in accumulators:
      merged["tasks"] += accumulator["tasks"]
      for reason, count in accumulator["dropped_members"].items():
        merged["dropped_members"][reason] = merged["dropped_members"].get(reason, 0) + count
      merged["capped_interactions"] = [a + b for a, b in zip(merged["capped_interactions"],
                                                             accumulator["capped_interactions"])]
      for key in ("support", "query"):
        histogram = _grown(merged[key], len(accumulator[key]))
        for size, count in enumerate(accumulator[key]):
          histogram[size] += count
    return merged

  def extract_output(self, accumulator):
    support, query = accumulator["support"], accumulator["query"]
    return {
        "tasks": accumulator["tasks"],
        "cold_start_tasks": support[0],
        "dropped_members": dict(sorted(accumulator["dropped_members"].items())),
        "capped_interactions": dict(zip((tensor_layout.SUPPORT, tensor_layout.QUERY),
                                        accumulator["capped_interactions"])),
        "support_size": size_distribution(support),
        "query_size": size_distribution(query),
    }


def _grown(histogram: List[int], length: int) -> List[int]:
  """`histogram`, extended in place with zeros to at least `length` entries."""
  histogram.extend([0] * (length - len(histogram)))
  return histogram


def size_distribution(histogram: List[int]) -> Dict[str, object]:
  """min/mean/median/p90/max and the histogram (count per size) of task sizes."""
  counts = np.asarray(histogram, np.int64)
  total = int(counts.sum())
  if not total:
    return {"histogram": histogram}
  sizes = np.repeat(np.arange(len(counts)), counts)
  return {"min": int(sizes.min()), "mean": round(float(sizes.mean()), 3),
          "median": float(np.median(sizes)), "p90": float(np.percentile(sizes, 90)),
          "max": int(sizes.max()), "histogram": histogram}


def _statistics_json(per_split: Iterable[Tuple[str, dict]], settings: TaskSettings) -> str:
  statistics = dict(sorted(per_split))
  statistics["settings"] = dataclasses.asdict(settings)
  return json.dumps(statistics, indent=2)


def build_task_pipeline(pipeline: beam.Pipeline, input_uris: Mapping[str, str],
                        output_uri: str, settings: TaskSettings) -> None:
  """Adds the TaskGen transforms to `pipeline`.

  Args:
    pipeline: the Beam pipeline.
    input_uris: split name (`train`, `eval`) -> directory of gzipped
      transformed tf.Example TFRecords.
    output_uri: directory receiving `Split-<split>/` task records and
      `task_statistics.json`.
    settings: the task settings.
  """
  interactions = {
      split: (pipeline
              | f"Read{split.title()}" >> beam.io.ReadFromTFRecord(os.path.join(uri, "*"))
              | f"Key{split.title()}" >> beam.Map(member_keyed).with_output_types(
                  Tuple[bytes, bytes]))
      for split, uri in input_uris.items()}
  made = (interactions
          | "GroupByMember" >> grouped_records.GroupRecordsByKey()
          | "MakeTasks" >> beam.ParDo(_MakeTasks(settings)).with_outputs(
              TRAIN_SPLIT, EVAL_SPLIT, _SUMMARY))
  for split in (TRAIN_SPLIT, EVAL_SPLIT):
    _ = (made[split]
         | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
             os.path.join(output_uri, f"Split-{split}", _RECORD_PREFIX),
             file_name_suffix=".gz"))
  # Memory per worker stays bounded at any scale: GroupByMember holds one member's
  # interactions (and its shuffle holds them compressed: `grouped_records`), the
  # statistics combine into fixed-size histograms (combiner lifting), and "Gather"
  # lists one summary per split (two), not per member.
  _ = (made[_SUMMARY]
       | "SummariseSplits" >> beam.CombinePerKey(_TaskStatisticsFn(settings))
       | "Gather" >> beam.combiners.ToList()
       | "ToJson" >> beam.Map(_statistics_json, settings)
       | "WriteStatistics" >> beam.io.WriteToText(
           os.path.join(output_uri, STATISTICS_FILE), shard_name_template=""))


def read_records(tasks_uri: str, split: str) -> List[bytes]:
  """The serialized task records of one split of a TaskGen output, sorted."""
  files = tf.io.gfile.glob(os.path.join(tasks_uri, f"Split-{split}", "*"))
  return sorted(r.numpy() for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def read_statistics(tasks_uri: str) -> dict:
  """The `task_statistics.json` of a TaskGen output artifact."""
  with tf.io.gfile.GFile(os.path.join(tasks_uri, STATISTICS_FILE)) as f:
    return json.load(f)


@tfx.dsl.components.component(use_beam=True)
def TaskGen(  # pylint: disable=invalid-name
    transformed_examples: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.Examples],
    tasks: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    window: tfx.dsl.components.Parameter[int] = DEFAULTS.window,
    support_fraction: tfx.dsl.components.Parameter[float] = DEFAULTS.support_fraction,
    max_support: tfx.dsl.components.Parameter[int] = DEFAULTS.max_support,
    max_query: tfx.dsl.components.Parameter[int] = DEFAULTS.max_query,
    min_interactions: tfx.dsl.components.Parameter[int] = DEFAULTS.min_interactions,
    task_history: tfx.dsl.components.Parameter[int] = DEFAULTS.task_history,
    beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """Groups transformed interactions by member into padded MAML task records.

  See the module docstring for the split rules. The output `tasks` artifact
  has splits `train` and `eval`, custom properties `<split>_tasks` and
  `<split>_cold_start_tasks`, and `task_statistics.json` at its root.

  Args:
    transformed_examples: Transform output with `train` and `eval` splits.
    tasks: the task records.
    window: training-period interactions per training task.
    support_fraction: share of a window that is support.
    max_support: support cap (latest interactions) of evaluation tasks and
      their padded length.
    max_query: query cap (earliest interactions) of evaluation tasks and
      their padded length.
    min_interactions: members with fewer training-period interactions get
      no training task.
    task_history: 0 splits each window into support and query; h > 0 makes
      each window the query of a history task with the member's h previous
      interactions as support.
    (`limaml_keras.task_settings.TaskSettings` documents and checks these.)
    beam_pipeline: provided by TFX, built from the pipeline's Beam args.
  """
  settings = TaskSettings(window=window, support_fraction=support_fraction,
                          max_support=max_support, max_query=max_query,
                          min_interactions=min_interactions, task_history=task_history)
  splits = artifact_utils.decode_split_names(transformed_examples.split_names)
  missing = [s for s in (TRAIN_SPLIT, EVAL_SPLIT) if s not in splits]
  if missing:
    raise ValueError(f"TaskGen needs transformed examples with splits {TRAIN_SPLIT!r} and "
                     f"{EVAL_SPLIT!r}; missing {missing} (has {splits})")
  input_uris = {split: artifact_utils.get_split_uri([transformed_examples], split)
                for split in (TRAIN_SPLIT, EVAL_SPLIT)}
  with beam_pipeline as pipeline:
    build_task_pipeline(pipeline, input_uris, tasks.uri, settings)
  tasks.split_names = artifact_utils.encode_split_names([TRAIN_SPLIT, EVAL_SPLIT])
  statistics = read_statistics(tasks.uri)
  for split in (TRAIN_SPLIT, EVAL_SPLIT):
    tasks.set_int_custom_property(f"{split}_tasks", statistics[split]["tasks"])
    tasks.set_int_custom_property(f"{split}_cold_start_tasks",
                                  statistics[split]["cold_start_tasks"])
  if not statistics[TRAIN_SPLIT]["tasks"]:
    raise ValueError(f"TaskGen made no training task: {statistics[TRAIN_SPLIT]}")
