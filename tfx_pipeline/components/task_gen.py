"""TaskGen: a Beam component that turns transformed interactions into MAML tasks.

Input: Transform's `transformed_examples` with a `train` split (the training
period) and an `eval` split (the later evaluation period). Output: an
`Examples` artifact with the same splits, one task record per member
(`tfx_pipeline.components.task_records`), plus `task_statistics.json` at its root.

Per member, interactions ordered by time, ties by item id and label
(`limaml_keras.tasks.build_tasks` does the split, so the pipeline and the
in-memory path agree wherever timestamps do not tie):

* train split: the member's training-period interactions, the earliest
  `support_fraction` as support, the rest as query; members with fewer than
  `min_train_interactions` are dropped.
* eval split: support = the member's training-period interactions (what is
  known before the cutoff), query = their evaluation-period interactions.
  Members without training-period interactions are cold-start tasks
  (support all padding); members without evaluation-period interactions have
  nothing to score and get no eval task.

Support keeps the latest `max_support` interactions, query the earliest
`max_query`; both are padded to exactly those lengths. A member's cost is
one sort of their timestamps plus the capped rows, however many
interactions they have.

Idempotent: the records depend only on the input examples and the settings
(not on the order Beam groups them in), so a rerun writes the same set of
records and the same `task_statistics.json`; records are not sorted across
shards, so compare them as a set (`read_records`).
"""

import dataclasses
import json
import os
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils

from limaml_keras import tensor_layout
from limaml_keras import tasks as tasks_lib
from tfx_pipeline.models import preprocessing
from tfx_pipeline.components import task_records

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
STATISTICS_FILE = "task_statistics.json"
_RECORD_PREFIX = "data_tfrecord"
_SUMMARY = "summary"

# Transformed features a task needs, and their kind in the tf.Example.
_FLOAT_KEYS = (tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES,
               tensor_layout.LABEL)
_INT_KEYS = (tensor_layout.MEMBER_ID, tensor_layout.ITEM_ID, preprocessing.TIMESTAMP)
_MATRIX_KEYS = (tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES)
_Interaction = Dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class TaskSettings:
  """How members' interactions become tasks (see the module docstring)."""
  support_fraction: float
  max_support: int
  max_query: int
  min_train_interactions: int

  def __post_init__(self):
    if not 0.0 < self.support_fraction < 1.0:
      raise ValueError(f"support_fraction must be in (0, 1), got {self.support_fraction!r}")
    if self.max_support < 1 or self.max_query < 1:
      raise ValueError(f"max_support and max_query must be >= 1, got {self.max_support!r} "
                       f"and {self.max_query!r}")
    if self.min_train_interactions < 1:
      raise ValueError(f"min_train_interactions must be >= 1, got "
                       f"{self.min_train_interactions!r}")


def parse_interaction(serialized: bytes) -> Tuple[bytes, _Interaction]:
  """A transformed tf.Example -> `(member_key, {feature: numpy value})`."""
  feature = tf.train.Example.FromString(serialized).features.feature
  values = {k: np.asarray(feature[k].float_list.value, np.float32) for k in _FLOAT_KEYS}
  values.update({k: np.asarray(feature[k].int64_list.value, np.int64) for k in _INT_KEYS})
  return feature[preprocessing.MEMBER_KEY].bytes_list.value[0], values


def _stack(interactions: List[_Interaction], member_key: bytes,
           order_key: np.ndarray) -> Dict[str, np.ndarray]:
  """Per-interaction arrays in the layout `tasks_lib.build_tasks` takes."""
  arrays = {}
  for key in _FLOAT_KEYS + _INT_KEYS:
    column = [interaction[key] for interaction in interactions]
    arrays[key] = np.stack(column) if key in _MATRIX_KEYS else np.concatenate(column)
  arrays[tasks_lib.TIMESTAMP] = order_key
  arrays[tasks_lib.MEMBER_KEY] = np.full(len(interactions), member_key, dtype=object)
  return arrays


def _time_ranks(interactions: List[_Interaction]) -> np.ndarray:
  """0..n-1 in time order; ties are ordered by item id, then label.

  Not by input order: Beam delivers a member's interactions in no fixed
  order, and the output must not depend on it.
  """
  def column(key):
    return np.concatenate([i[key] for i in interactions])

  order = np.lexsort((column(tensor_layout.LABEL), column(tensor_layout.ITEM_ID),
                      column(preprocessing.TIMESTAMP)))
  ranks = np.empty(len(order), np.int64)
  ranks[order] = np.arange(len(order))
  return ranks


def _pad(task: tasks_lib.Tasks, settings: TaskSettings) -> Dict[str, np.ndarray]:
  """Task 0 of `task`, its sides zero-padded to exactly max_support / max_query."""
  out = {tensor_layout.MEMBER_ID: task.arrays[tensor_layout.MEMBER_ID][0],
         tensor_layout.MEMBER_FEATURES: task.arrays[tensor_layout.MEMBER_FEATURES][0]}
  for side, length in ((tensor_layout.SUPPORT, settings.max_support),
                       (tensor_layout.QUERY, settings.max_query)):
    for name in tensor_layout.INTERACTION_KEYS:
      key = tensor_layout.side_key(side, name)
      value = task.arrays[key][0][:length]
      out[key] = np.zeros((length,) + value.shape[1:], value.dtype)
      out[key][:value.shape[0]] = value
  return out


def _encoded(task: tasks_lib.Tasks, member_key: bytes, settings: TaskSettings) -> bytes:
  return task_records.encode(_pad(task, settings), member_key,
                             int(task.support_sizes[0]), int(task.query_sizes[0]))


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
      _stack([interactions[i] for i in keep], member_key, order_key[keep]),
      cutoff_time=support_size, max_support=settings.max_support, max_query=settings.max_query)
  query_size = len(interactions) - support_size
  return dataclasses.replace(task, capped_interactions={
      tensor_layout.SUPPORT: support_size - int(task.support_sizes[0]),
      tensor_layout.QUERY: query_size - int(task.query_sizes[0])})


def train_task(member_key: bytes, train: List[_Interaction],
               settings: TaskSettings) -> Optional[tasks_lib.Tasks]:
  """The member's training task, or None when it has too few interactions."""
  if len(train) < settings.min_train_interactions:
    return None
  support_size = int(tasks_lib.fraction_support_size(len(train), settings.support_fraction))
  return _capped_task(member_key, train, _time_ranks(train), support_size, settings)


def eval_task(member_key: bytes, train: List[_Interaction], evaluation: List[_Interaction],
              settings: TaskSettings) -> Optional[tasks_lib.Tasks]:
  """The member's evaluation task, or None when it has no evaluation interaction."""
  if not evaluation:
    return None
  # Rank time within each period and put the periods one after the other, so
  # the split follows the periods even when their timestamps overlap.
  order_key = np.concatenate([_time_ranks(train) if train else np.zeros(0, np.int64),
                              len(train) + _time_ranks(evaluation)])
  return _capped_task(member_key, train + evaluation, order_key, len(train), settings)


class _MakeTasks(beam.DoFn):
  """(member_key, {split: interactions}) -> task records, tagged by split, and summaries."""

  def __init__(self, settings: TaskSettings):
    super().__init__()
    self._settings = settings

  def process(self, element):
    member_key, grouped = element
    train = list(grouped[TRAIN_SPLIT])
    evaluation = list(grouped[EVAL_SPLIT])
    made = ((TRAIN_SPLIT, train_task(member_key, train, self._settings),
             "too_few_interactions"),
            (EVAL_SPLIT, eval_task(member_key, train, evaluation, self._settings), "no_query"))
    for split, task, reason in made:
      if task is None:
        yield beam.pvalue.TaggedOutput(_SUMMARY, (split, {"dropped": reason}))
        continue
      yield beam.pvalue.TaggedOutput(split, _encoded(task, member_key, self._settings))
      yield beam.pvalue.TaggedOutput(_SUMMARY, (split, {
          "support": int(task.support_sizes[0]), "query": int(task.query_sizes[0]),
          "capped_support": task.capped_interactions[tensor_layout.SUPPORT],
          "capped_query": task.capped_interactions[tensor_layout.QUERY]}))


class _TaskStatisticsFn(beam.CombineFn):
  """Summaries of one split -> task counts and support/query size histograms."""

  def __init__(self, settings: TaskSettings):
    super().__init__()
    self._settings = settings

  def create_accumulator(self):
    return {"tasks": 0, "dropped_members": {}, "capped_interactions": [0, 0],
            "support": [0] * (self._settings.max_support + 1),
            "query": [0] * (self._settings.max_query + 1)}

  def add_input(self, accumulator, summary):
    if "dropped" in summary:
      dropped = accumulator["dropped_members"]
      dropped[summary["dropped"]] = dropped.get(summary["dropped"], 0) + 1
      return accumulator
    accumulator["tasks"] += 1
    accumulator["support"][summary["support"]] += 1
    accumulator["query"][summary["query"]] += 1
    accumulator["capped_interactions"][0] += summary["capped_support"]
    accumulator["capped_interactions"][1] += summary["capped_query"]
    return accumulator

  def merge_accumulators(self, accumulators):
    merged = self.create_accumulator()
    for accumulator in accumulators:
      merged["tasks"] += accumulator["tasks"]
      for reason, count in accumulator["dropped_members"].items():
        merged["dropped_members"][reason] = merged["dropped_members"].get(reason, 0) + count
      for key in ("capped_interactions", "support", "query"):
        merged[key] = [a + b for a, b in zip(merged[key], accumulator[key])]
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
              | f"Parse{split.title()}" >> beam.Map(parse_interaction))
      for split, uri in input_uris.items()}
  made = (interactions
          | "GroupByMember" >> beam.CoGroupByKey()
          | "MakeTasks" >> beam.ParDo(_MakeTasks(settings)).with_outputs(
              TRAIN_SPLIT, EVAL_SPLIT, _SUMMARY))
  for split in (TRAIN_SPLIT, EVAL_SPLIT):
    _ = (made[split]
         | f"Write{split.title()}" >> beam.io.WriteToTFRecord(
             os.path.join(output_uri, f"Split-{split}", _RECORD_PREFIX),
             file_name_suffix=".gz"))
  # Memory per worker stays bounded at any scale: GroupByMember holds one member's
  # interactions, the statistics combine into fixed-size histograms (combiner
  # lifting), and "Gather" lists one summary per split (two), not per member.
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
    support_fraction: tfx.dsl.components.Parameter[float] = 0.5,
    max_support: tfx.dsl.components.Parameter[int] = 20,
    max_query: tfx.dsl.components.Parameter[int] = 20,
    min_train_interactions: tfx.dsl.components.Parameter[int] = 2,
    beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """Groups transformed interactions by member into padded MAML task records.

  See the module docstring for the split rules. The output `tasks` artifact
  has splits `train` and `eval`, custom properties `<split>_tasks` and
  `<split>_cold_start_tasks`, and `task_statistics.json` at its root.

  Args:
    transformed_examples: Transform output with `train` and `eval` splits.
    tasks: the task records.
    support_fraction: share of a member's training-period interactions that
      are support in the training task.
    max_support: support cap (latest interactions) and padded length.
    max_query: query cap (earliest interactions) and padded length.
    min_train_interactions: members with fewer training-period interactions
      get no training task.
    beam_pipeline: provided by TFX, built from the pipeline's Beam args.
  """
  settings = TaskSettings(support_fraction, max_support, max_query, min_train_interactions)
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
