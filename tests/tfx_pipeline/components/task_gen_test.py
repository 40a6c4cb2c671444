"""Tests of TaskGen's per-member split rules and of its Beam pipeline."""

import dataclasses
import json
import os

import apache_beam as beam
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import task_settings
from limaml_keras import tasks as tasks_lib
from limaml_keras import tensor_layout
from tfx_pipeline.models import preprocessing
from tfx_pipeline.components import task_gen
from tfx_pipeline.components import task_records
from tfx_pipeline import testing

SETTINGS = task_settings.TaskSettings(window=4, support_fraction=0.5, max_support=3, max_query=2,
                                      min_interactions=2)
SUPPORT, QUERY = tensor_layout.SUPPORT, tensor_layout.QUERY


def _interaction(item, timestamp, member_feature=0.0, label=1.0):
  """A parsed transformed interaction; the item id doubles as its name in assertions."""
  return {tensor_layout.MEMBER_ID: np.array([7]),
          tensor_layout.MEMBER_FEATURES: np.array([member_feature, timestamp], np.float32),
          tensor_layout.ITEM_ID: np.array([item]),
          tensor_layout.ITEM_FEATURES: np.array([item, 2 * item], np.float32),
          tensor_layout.CONTEXT_FEATURES: np.zeros(0, np.float32),
          tensor_layout.LABEL: np.array([label], np.float32),
          preprocessing.TIMESTAMP: np.array([timestamp])}


def _items(task, side, t=0):
  arrays = task.arrays
  mask = arrays[tensor_layout.side_key(side, tensor_layout.MASK)][t] > 0
  return list(arrays[tensor_layout.side_key(side, tensor_layout.ITEM_ID)][t][mask])


def test_train_tasks_are_windows_covering_every_interaction():
  train = [_interaction(item, 10 * item) for item in (5, 1, 4, 2, 3, 6, 7, 8, 9)]
  windows = list(task_gen.train_tasks(b"m", train, SETTINGS))
  # 9 interactions, windows of 4 in time order: [1-4], [5-8], [9] (cold start).
  windows = [w.select([t]) for w in windows for t in range(len(w))]
  assert [(_items(w, SUPPORT), _items(w, QUERY)) for w in windows] == [
      ([1, 2], [3, 4]), ([5, 6], [7, 8]), ([], [9])]
  assert sum(int(w.support_sizes.sum() + w.query_sizes.sum()) for w in windows) == len(train)
  for window in windows:
    assert window.capped_interactions == {SUPPORT: 0, QUERY: 0}
    # Padded to a full window's sides.
    assert window.arrays[tensor_layout.side_key(SUPPORT, tensor_layout.MASK)].shape == (1, 2)
    assert window.arrays[tensor_layout.side_key(QUERY, tensor_layout.MASK)].shape == (1, 2)
  # Member features come from the latest support interaction.
  assert windows[0].arrays[tensor_layout.MEMBER_FEATURES][0][1] == 20


@pytest.mark.parametrize("task_history", [0, 3, 6])
def test_train_tasks_are_the_library_recipe(task_history):
  """TaskGen's per-member tasks are `limaml_keras.tasks.training_tasks` on all members at once.

  The 600-interaction member spans three of TaskGen's batches of windows, so
  history tasks at a batch's start read the previous batch's interactions.
  """
  settings = SETTINGS.replace(task_history=task_history)
  rng = np.random.default_rng(1)
  members = {f"m{m}".encode(): [_interaction(int(i), int(t)) for i, t in zip(
      rng.integers(1, 50, n), rng.permutation(1000)[:n])]
             for m, n in enumerate((1, 3, 9, 17, 600))}
  per_member = []
  for key, rows in members.items():
    per_member += [(key, _items(tasks, SUPPORT, t), _items(tasks, QUERY, t))
                   for tasks in task_gen.train_tasks(key, rows, settings) for t in range(len(tasks))]
  stacked = {k: np.concatenate([np.asarray(r[k])[None] if k in (
      tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES)
      else r[k] for rows in members.values() for r in rows]) for k in _interaction(1, 1)}
  stacked[tensor_layout.MEMBER_KEY] = np.array(
      [key for key, rows in members.items() for _ in rows], dtype=object)
  library = tasks_lib.training_tasks(stacked, settings)
  expected = [(library.member_ids[t].split("#")[0], _items(library, SUPPORT, t),
               _items(library, QUERY, t)) for t in range(len(library))]
  assert sorted((k.decode(), s, q) for k, s, q in per_member) == sorted(expected)
  assert library.dropped_members == {"too_few_interactions": 1}


def test_train_tasks_need_min_interactions():
  assert not list(task_gen.train_tasks(b"m", [_interaction(1, 10)], SETTINGS))


def test_eval_task_support_is_the_training_period():
  train = [_interaction(item, 10 * item) for item in (1, 2, 3, 4)]
  # Evaluation-period timestamps that overlap the training period still go to query.
  evaluation = [_interaction(9, 5), _interaction(8, 1)]
  task = task_gen.eval_task(b"m", train, evaluation, SETTINGS)
  assert _items(task, SUPPORT) == [2, 3, 4]
  assert _items(task, QUERY) == [8, 9]


def test_eval_task_cold_start_and_no_query():
  task = task_gen.eval_task(b"m", [], [_interaction(3, 30), _interaction(2, 20)], SETTINGS)
  assert _items(task, SUPPORT) == [] and _items(task, QUERY) == [2, 3]
  assert task.arrays[tensor_layout.MEMBER_FEATURES][0][1] == 20  # The first query interaction's.
  assert task_gen.eval_task(b"m", [_interaction(1, 1)], [], SETTINGS) is None


def _serialized(interactions, member_key=b"m"):
  return task_gen.SerializedInteractions(
      [testing.transformed_record(member_key, x) for x in interactions])


def _assert_same_tasks(actual, expected):
  assert actual.member_ids.tolist() == expected.member_ids.tolist()
  assert actual.arrays.keys() == expected.arrays.keys()
  for key, value in expected.arrays.items():
    np.testing.assert_array_equal(actual.arrays[key], value, err_msg=key)
    assert actual.arrays[key].dtype == value.dtype, key


@pytest.mark.parametrize("min_batch_parse", [0, 2, 1000])
def test_serialized_records_give_the_tasks_of_parsed_ones(monkeypatch, min_batch_parse):
  # Parsing in Python (small sets) or batched in TF (`stacked`, chunked
  # `sort_keys`) must change nothing; the context features have width 0, and
  # chunks of 3 split the sort keys.
  monkeypatch.setattr(task_gen.SerializedInteractions, "CHUNK", 3)
  monkeypatch.setattr(task_gen.SerializedInteractions, "MIN_BATCH_PARSE", min_batch_parse)
  train = [_interaction(item, 10 * item, label=item % 2) for item in (5, 1, 4, 2, 3, 6, 7, 8, 9)]
  evaluation = [_interaction(9, 5), _interaction(8, 1)]
  serialized = _serialized(train)
  assert len(serialized) == len(train)
  np.testing.assert_array_equal(serialized.sort_keys()[0], [50, 10, 40, 20, 30, 60, 70, 80, 90])
  for settings in (SETTINGS, dataclasses.replace(SETTINGS, task_history=3)):
    for got, want in zip(task_gen.train_tasks(b"m", serialized, settings),
                         task_gen.train_tasks(b"m", train, settings), strict=True):
      _assert_same_tasks(got, want)
  _assert_same_tasks(task_gen.eval_task(b"m", serialized, _serialized(evaluation), SETTINGS),
                     task_gen.eval_task(b"m", train, evaluation, SETTINGS))


@pytest.mark.parametrize("min_batch_parse", [0, 1000])
def test_records_of_other_widths_are_a_clear_error(monkeypatch, min_batch_parse):
  monkeypatch.setattr(task_gen.SerializedInteractions, "MIN_BATCH_PARSE", min_batch_parse)
  narrow = _interaction(1, 10)
  narrow[tensor_layout.ITEM_FEATURES] = np.array([1.0], np.float32)
  records = _serialized([_interaction(2, 20), narrow])
  with pytest.raises(ValueError, match="do not all have the widths of the first one"):
    records.stacked([0, 1])


def test_settings_are_the_library_settings_and_are_checked():
  assert task_gen.TaskSettings is task_settings.TaskSettings
  with pytest.raises(ValueError, match="support_fraction"):
    SETTINGS.replace(support_fraction=1.0)
  with pytest.raises(ValueError, match="max_support must be"):
    SETTINGS.replace(max_support=0)


def test_size_distribution():
  assert task_gen.size_distribution([1, 0, 3]) == {
      "min": 0, "mean": 1.5, "median": 2.0, "p90": 2.0, "max": 2, "histogram": [1, 0, 3]}
  assert task_gen.size_distribution([0, 0]) == {"histogram": [0, 0]}


def _transformed_example(member, item, timestamp, label):
  return testing.transformed_record(member.encode(), _interaction(
      item, timestamp, member_feature=float(len(member)), label=label))


def _write_split(directory, rows, shards=1):
  os.makedirs(directory)
  for shard in range(shards):
    with tf.io.TFRecordWriter(os.path.join(directory, f"part-{shard}.gz"), "GZIP") as writer:
      for row in rows[shard::shards]:
        writer.write(_transformed_example(*row))
  return str(directory)


def _run_task_gen(inputs, output, beam_args=("--direct_running_mode=in_memory",)):
  options = PipelineOptions(list(beam_args))
  with beam.Pipeline(options=options) as pipeline:
    task_gen.build_task_pipeline(pipeline, inputs, output, SETTINGS)


def test_transforms_survive_pickling():
  # Beam's multi-processing and distributed runners ship them to workers pickled.
  for transform in (task_gen._MakeTasks(SETTINGS), task_gen._TaskStatisticsFn(SETTINGS)):
    restored = pickler.loads(pickler.dumps(transform))
    assert restored._settings == SETTINGS


@pytest.mark.slow
def test_beam_pipeline_writes_tasks_and_statistics(tmp_path):
  # a: 4 training interactions and 1 later; b: 1 training interaction (no training task);
  # c: only later interactions (cold start in eval).
  train = [("a", 1, 10, 1.0), ("a", 2, 20, 0.0), ("a", 3, 30, 1.0), ("a", 4, 40, 1.0),
           ("b", 5, 15, 0.0)]
  evaluation = [("a", 6, 60, 1.0), ("c", 7, 70, 0.0), ("c", 8, 80, 1.0)]
  inputs = {task_gen.TRAIN_SPLIT: _write_split(tmp_path / "in" / "train", train),
            task_gen.EVAL_SPLIT: _write_split(tmp_path / "in" / "eval", evaluation)}
  output = str(tmp_path / "out")
  _run_task_gen(inputs, output)

  statistics = task_gen.read_statistics(output)
  assert statistics["train"]["tasks"] == 1
  assert statistics["train"]["dropped_members"] == {"too_few_interactions": 2}
  assert statistics["eval"]["tasks"] == 2 and statistics["eval"]["cold_start_tasks"] == 1
  assert statistics["eval"]["dropped_members"] == {"no_query": 1}
  assert statistics["eval"]["support_size"]["histogram"] == [1, 0, 0, 1]
  assert statistics["settings"]["max_support"] == 3

  pattern = os.path.join(output, "Split-eval", "*")
  task_format = task_records.infer_format(pattern)
  assert (task_format.support_length, task_format.query_length) == (3, 2)
  batch = next(iter(task_records.dataset(pattern, task_format, batch_size=8)))
  support_mask = batch[tensor_layout.side_key(SUPPORT, tensor_layout.MASK)].numpy()
  assert sorted(support_mask.sum(axis=1)) == [0, 3]
  query_items = batch[tensor_layout.side_key(QUERY, tensor_layout.ITEM_ID)].numpy()
  assert sorted(map(tuple, query_items)) == [(6, 0), (7, 8)]
  json.dumps(statistics)  # Plain JSON types only.


def test_ties_are_ordered_by_item_not_by_arrival():
  # Three interactions in the same second: which two are support must not depend on order.
  rows = [_interaction(item, 50) for item in (3, 1, 2)] + [_interaction(9, 60)]
  for arrival in (rows, rows[::-1], rows[1:] + rows[:1]):
    task, = task_gen.train_tasks(b"m", arrival, SETTINGS)
    assert _items(task, SUPPORT) == [1, 2] and _items(task, QUERY) == [3, 9]


@pytest.mark.slow
def test_rerun_on_the_same_examples_writes_the_same_records(tmp_path):
  """Idempotence: same records (as a set) and same statistics, whatever the arrival order."""
  rng = np.random.default_rng(0)
  train = [(f"m{rng.integers(6)}", int(rng.integers(1, 9)), int(rng.integers(1, 6)) * 10,
            float(rng.integers(2))) for _ in range(60)]
  evaluation = [(f"m{rng.integers(8)}", int(rng.integers(1, 9)), 100 + int(rng.integers(3)),
                 1.0) for _ in range(20)]
  outputs = []
  for run, (order, shards) in enumerate(((1, 1), (-1, 3))):
    inputs = {task_gen.TRAIN_SPLIT: _write_split(tmp_path / f"in{run}" / "train",
                                                 train[::order], shards),
              task_gen.EVAL_SPLIT: _write_split(tmp_path / f"in{run}" / "eval",
                                                evaluation[::order], shards)}
    outputs.append(str(tmp_path / f"out{run}"))
    _run_task_gen(inputs, outputs[-1])
  for split in (task_gen.TRAIN_SPLIT, task_gen.EVAL_SPLIT):
    first = task_gen.read_records(outputs[0], split)
    assert first and first == task_gen.read_records(outputs[1], split)
  with open(os.path.join(outputs[0], task_gen.STATISTICS_FILE), "rb") as a, open(
      os.path.join(outputs[1], task_gen.STATISTICS_FILE), "rb") as b:
    assert a.read() == b.read()


@pytest.mark.slow
def test_portable_runner_writes_what_the_direct_runner_writes(tmp_path):
  """The runner path of Flink and Spark (Fn API, pickled transforms) gives the same tasks."""
  train = [(f"m{i % 5}", i, 10 * i, float(i % 2)) for i in range(1, 21)]
  evaluation = [(f"m{i % 7}", 30 + i, 300 + i, 1.0) for i in range(8)]
  inputs = {task_gen.TRAIN_SPLIT: _write_split(tmp_path / "in" / "train", train, shards=2),
            task_gen.EVAL_SPLIT: _write_split(tmp_path / "in" / "eval", evaluation)}
  outputs = {}
  for name, beam_args in (("direct", ("--runner=DirectRunner",)),
                          ("portable", testing.PORTABLE_RUNNER_ARGS)):
    outputs[name] = str(tmp_path / name)
    _run_task_gen(inputs, outputs[name], beam_args)
  for split in (task_gen.TRAIN_SPLIT, task_gen.EVAL_SPLIT):
    direct = task_gen.read_records(outputs["direct"], split)
    assert direct and direct == task_gen.read_records(outputs["portable"], split)
  assert task_gen.read_statistics(outputs["direct"]) == task_gen.read_statistics(
      outputs["portable"])
