"""Tests of task building: grouping, time split, caps, padding, datasets."""

import numpy as np
import pytest

from limaml_keras import task_settings
from limaml_keras import tensor_layout
from limaml_keras import preprocessing
from limaml_keras import synthetic
from limaml_keras import tasks as tasks_lib

# (member key, member index, timestamp, item id, label); rows deliberately out of order.
# Item ids encode the time order: member a's k-th interaction is item k.
ROWS = [
    ("a", 1, 50, 5, 1),
    ("b", 2, 7, 12, 0),
    ("a", 1, 10, 1, 0),
    ("c", 3, 100, 21, 1),
    ("a", 1, 40, 4, 0),
    ("a", 1, 20, 2, 1),
    ("b", 2, 3, 11, 1),
    ("a", 1, 30, 3, 1),
]


def _interactions(rows=ROWS, with_key=True):
  key, member, time, item, label = (np.array(c) for c in zip(*rows))
  data = {
      tensor_layout.MEMBER_ID: member.astype(np.int64),
      # The timestamp in the member features shows which row they came from.
      tensor_layout.MEMBER_FEATURES: np.stack([member, time], axis=1).astype(np.float32),
      tensor_layout.ITEM_ID: item.astype(np.int64),
      tensor_layout.ITEM_FEATURES: np.stack([item, 10 * item], axis=1).astype(np.float32),
      tensor_layout.CONTEXT_FEATURES: time[:, None].astype(np.float32),
      tensor_layout.LABEL: label.astype(np.float32),
      preprocessing.TIMESTAMP: time.astype(np.int64),
  }
  if with_key:
    data[preprocessing.MEMBER_KEY] = key.astype(object)
  return data


def _key(side, name):
  return tensor_layout.side_key(side, name)


def test_fraction_split_orders_by_time_and_pads_with_zeros():
  tasks = tasks_lib.build_tasks(_interactions(), support_fraction=0.5, min_interactions=2)
  a = tasks.arrays
  assert list(tasks.member_ids) == ["a", "b"]
  assert tasks.dropped_members == {"too_few_interactions": 1}
  np.testing.assert_array_equal(tasks.support_sizes, [2, 1])
  np.testing.assert_array_equal(tasks.query_sizes, [3, 1])
  np.testing.assert_array_equal(a[tensor_layout.MEMBER_ID], [1, 2])
  np.testing.assert_array_equal(a[tensor_layout.MEMBER_FEATURES], [[1, 20], [2, 3]])
  np.testing.assert_array_equal(a[_key("support", "item_id")], [[1, 2], [11, 0]])
  np.testing.assert_array_equal(a[_key("support", "label")], [[0, 1], [1, 0]])
  np.testing.assert_array_equal(a[_key("support", "mask")], [[1, 1], [1, 0]])
  np.testing.assert_array_equal(a[_key("support", "item_features")][1], [[11, 110], [0, 0]])
  np.testing.assert_array_equal(a[_key("support", "context_features")][:, :, 0],
                                [[10, 20], [3, 0]])
  np.testing.assert_array_equal(a[_key("query", "item_id")], [[3, 4, 5], [12, 0, 0]])
  np.testing.assert_array_equal(a[_key("query", "label")], [[1, 0, 1], [0, 0, 0]])
  np.testing.assert_array_equal(a[_key("query", "mask")], [[1, 1, 1], [1, 0, 0]])
  np.testing.assert_array_equal(a[_key("query", "context_features")][1, :, 0], [7, 0, 0])


def test_arrays_follow_the_documented_layout():
  tasks = tasks_lib.build_tasks(_interactions(), min_interactions=2)
  assert tuple(tasks.arrays) == tensor_layout.task_keys()
  for key, value in tasks.arrays.items():
    assert value.shape[0] == len(tasks), key
    expected = np.int64 if key.endswith("item_id") or key == tensor_layout.MEMBER_ID else np.float32
    assert value.dtype == expected, key
  assert tasks.arrays[_key("support", "item_features")].shape == (2, 2, 2)
  assert tasks.arrays[_key("query", "context_features")].shape == (2, 3, 1)


def test_caps_keep_the_latest_support_and_the_earliest_query():
  tasks = tasks_lib.build_tasks(_interactions(), support_fraction=0.5, max_support=1,
                                max_query=2, min_interactions=2)
  np.testing.assert_array_equal(tasks.arrays[_key("support", "item_id")], [[2], [11]])
  np.testing.assert_array_equal(tasks.arrays[_key("query", "item_id")], [[3, 4], [12, 0]])
  assert tasks.capped_interactions == {"support": 1, "query": 1}
  np.testing.assert_array_equal(tasks.arrays[tensor_layout.MEMBER_FEATURES][0], [1, 20])


def test_cutoff_split_keeps_cold_start_and_drops_members_without_query():
  tasks = tasks_lib.build_tasks(_interactions(), cutoff_time=25)
  assert list(tasks.member_ids) == ["a", "c"]
  assert tasks.dropped_members == {"no_query": 1}
  np.testing.assert_array_equal(tasks.cold_start, [False, True])
  np.testing.assert_array_equal(tasks.arrays[_key("support", "item_id")], [[1, 2], [0, 0]])
  np.testing.assert_array_equal(tasks.arrays[_key("support", "mask")], [[1, 1], [0, 0]])
  np.testing.assert_array_equal(tasks.arrays[_key("query", "item_id")], [[3, 4, 5], [21, 0, 0]])
  # A cold-start task takes its member features from its first query interaction.
  np.testing.assert_array_equal(tasks.arrays[tensor_layout.MEMBER_FEATURES], [[1, 20], [3, 100]])


def test_timestamp_ties_keep_input_order():
  rows = [("d", 4, 5, 1, 0), ("d", 4, 5, 2, 1), ("d", 4, 1, 3, 0), ("d", 4, 5, 4, 1)]
  tasks = tasks_lib.build_tasks(_interactions(rows), support_fraction=0.5, min_interactions=2)
  np.testing.assert_array_equal(tasks.arrays[_key("support", "item_id")], [[3, 1]])
  np.testing.assert_array_equal(tasks.arrays[_key("query", "item_id")], [[2, 4]])


def test_min_interactions_one_makes_single_interaction_members_cold_start():
  tasks = tasks_lib.build_tasks(_interactions(), min_interactions=1)
  assert list(tasks.member_ids) == ["a", "b", "c"]
  assert tasks.dropped_members == {"too_few_interactions": 0}
  np.testing.assert_array_equal(tasks.support_sizes, [2, 1, 0])


def test_zero_support_cap_makes_every_task_cold_start():
  tasks = tasks_lib.build_tasks(_interactions(), max_support=0, min_interactions=2)
  assert tasks.cold_start.all()
  assert tasks.arrays[_key("support", "mask")].shape == (2, 1)
  assert not tasks.arrays[_key("support", "mask")].any()


def test_groups_by_member_id_without_member_key():
  tasks = tasks_lib.build_tasks(_interactions(with_key=False), min_interactions=2)
  np.testing.assert_array_equal(tasks.member_ids, [1, 2])
  data = _interactions(with_key=False)
  data[tensor_layout.MEMBER_ID][0] = 0
  with pytest.raises(ValueError, match="member_key"):
    tasks_lib.build_tasks(data)


def test_unknown_members_stay_separate_tasks_when_keyed():
  data = _interactions()
  data[tensor_layout.MEMBER_ID][:] = 0
  tasks = tasks_lib.build_tasks(data, min_interactions=1)
  assert list(tasks.member_ids) == ["a", "b", "c"]
  np.testing.assert_array_equal(tasks.arrays[tensor_layout.MEMBER_ID], [0, 0, 0])


def test_select_keeps_rows_consistent():
  tasks = tasks_lib.build_tasks(_interactions(), min_interactions=1)
  warm = tasks.select(~tasks.cold_start)
  assert list(warm.member_ids) == ["a", "b"]
  assert warm.arrays[_key("query", "item_id")].shape[0] == 2


def test_flatten_interactions_returns_the_real_entries_in_task_order():
  tasks = tasks_lib.build_tasks(_interactions(), support_fraction=0.5, min_interactions=2)
  flat = tasks_lib.flatten_interactions(tasks, include_task_index=True)
  np.testing.assert_array_equal(flat[tensor_layout.ITEM_ID], [1, 2, 3, 4, 5, 11, 12])
  np.testing.assert_array_equal(flat["task_index"], [0, 0, 0, 0, 0, 1, 1])
  np.testing.assert_array_equal(flat[tensor_layout.MEMBER_ID], [1, 1, 1, 1, 1, 2, 2])
  np.testing.assert_array_equal(flat[tensor_layout.LABEL], [0, 1, 1, 0, 1, 1, 0])
  np.testing.assert_array_equal(flat[tensor_layout.ITEM_FEATURES][:, 1],
                                [10, 20, 30, 40, 50, 110, 120])
  assert flat[tensor_layout.MEMBER_FEATURES].shape == (7, 2)
  query = tasks_lib.flatten_interactions(tasks, sides=("query",))
  np.testing.assert_array_equal(query[tensor_layout.ITEM_ID], [3, 4, 5, 12])
  assert "task_index" not in query
  reversed_sides = tasks_lib.flatten_interactions(tasks, sides=("query", "support"))
  np.testing.assert_array_equal(reversed_sides[tensor_layout.ITEM_ID], [3, 4, 5, 1, 2, 12, 11])


def test_dataset_yields_task_batch_dicts():
  tasks = tasks_lib.build_tasks(_interactions(), min_interactions=1)
  batches = list(tasks.dataset(batch_size=2))
  assert len(batches) == 2
  first = batches[0]
  assert set(first) == set(tensor_layout.task_keys())
  assert first[tensor_layout.MEMBER_ID].dtype.name == "int64"
  assert first[_key("support", "item_features")].shape == (2, 2, 2)
  assert first[_key("query", "mask")].dtype.name == "float32"
  assert len(list(tasks.dataset(batch_size=2, drop_remainder=True))) == 1
  shuffled = tasks.dataset(batch_size=3, shuffle=True, seed=1)
  ids = np.concatenate([b[tensor_layout.MEMBER_ID].numpy() for b in shuffled])
  assert sorted(ids) == [1, 2, 3]


def test_synthetic_end_to_end_through_the_preprocessor():
  data = synthetic.generate(num_members=300, num_items=50, seed=2)
  frame = data.interactions
  cutoff = data.start_timestamp + int(0.8 * (data.end_timestamp - data.start_timestamp))
  pre = preprocessing.Preprocessor(data.spec).fit(frame[frame["timestamp"] < cutoff])
  arrays = pre.transform(frame)
  tasks = tasks_lib.build_tasks(arrays, cutoff_time=cutoff, max_support=20)
  late_ids = set(data.member_ids[data.member_is_late])
  cold = set(tasks.member_ids[tasks.cold_start])
  assert late_ids & set(tasks.member_ids) <= cold
  assert (tasks.arrays[tensor_layout.MEMBER_ID][tasks.cold_start] == 0).any()
  assert tasks.support_sizes.max() == 20
  flat = tasks_lib.flatten_interactions(tasks, sides=("query",))
  assert flat[tensor_layout.LABEL].shape[0] == (frame["timestamp"] >= cutoff).sum()
  assert flat[tensor_layout.ITEM_FEATURES].shape[1] == pre.item_feature_dim


def test_large_inputs_and_a_very_active_member():
  """100k rows, half of them one member's: caps bound the padded width."""
  rng = np.random.default_rng(0)
  n = 100_000
  member = np.concatenate([rng.integers(1, 5000, size=n // 2), np.full(n // 2, 5000)])
  time = rng.permutation(n)  # distinct, exact in float32
  data = {
      tensor_layout.MEMBER_ID: member,
      tensor_layout.MEMBER_FEATURES: rng.standard_normal((n, 4)).astype(np.float32),
      tensor_layout.ITEM_ID: rng.integers(1, 1000, size=n),
      tensor_layout.ITEM_FEATURES: rng.standard_normal((n, 8)).astype(np.float32),
      tensor_layout.CONTEXT_FEATURES: time[:, None].astype(np.float32),
      tensor_layout.LABEL: rng.integers(0, 2, size=n).astype(np.float32),
      preprocessing.TIMESTAMP: time,
  }
  tasks = tasks_lib.build_tasks(data, max_support=50, max_query=50)
  assert tasks.arrays[_key("support", "item_id")].shape[1:] == (50,)
  assert tasks.arrays[_key("query", "item_features")].shape[1:] == (50, 8)
  heavy = np.flatnonzero(tasks.member_ids == 5000)[0]
  times = np.sort(time[member == 5000])
  half = n // 4
  np.testing.assert_array_equal(
      tasks.arrays[_key("support", "context_features")][heavy, :, 0], times[half - 50:half])
  np.testing.assert_array_equal(
      tasks.arrays[_key("query", "context_features")][heavy, :, 0], times[half:half + 50])
  assert len(tasks) + sum(tasks.dropped_members.values()) == len(np.unique(member))


@pytest.mark.parametrize("mutate, kwargs, pattern", [
    (lambda d: d.pop(tensor_layout.LABEL), {}, r"missing keys: \['label'\]"),
    (lambda d: d.update(item_id=d[tensor_layout.ITEM_ID][:-1]), {},
     "mismatched lengths: 'item_id' has 7 rows"),
    (lambda d: d[tensor_layout.LABEL].__setitem__(3, np.nan), {}, "'label' has NaN"),
    (lambda d: d.update({k: v[:0] for k, v in d.items()}), {}, "empty input"),
    (lambda d: d.update(item_features=d[tensor_layout.ITEM_FEATURES][:, 0]), {},
     "'item_features' must be 2-D"),
    (lambda d: None, dict(max_support=-1), "max_support must be >= 0"),
    (lambda d: None, dict(max_query=0), "max_query must be >= 1"),
    (lambda d: None, dict(support_fraction=1.0), r"support_fraction must be in \(0, 1\)"),
    (lambda d: None, dict(support_fraction=0.0), "support_fraction"),
    (lambda d: None, dict(support_fraction=0.5, cutoff_time=3), "not both"),
    (lambda d: None, dict(min_interactions=0), "min_interactions"),
    (lambda d: None, dict(cutoff_time=1000), "no task left"),
])
def test_bad_inputs_raise_naming_the_problem(mutate, kwargs, pattern):
  data = _interactions()
  mutate(data)
  with pytest.raises(ValueError, match=pattern):
    tasks_lib.build_tasks(data, **kwargs)


def test_bad_dataset_and_flatten_arguments_raise():
  tasks = tasks_lib.build_tasks(_interactions(), min_interactions=2)
  with pytest.raises(ValueError, match="batch_size"):
    tasks.dataset(0)
  with pytest.raises(ValueError, match="sides"):
    tasks_lib.flatten_interactions(tasks, sides=("support", "support"))
  with pytest.raises(ValueError, match="sides"):
    tasks_lib.flatten_interactions(tasks, sides=("train",))


def test_window_keys_cut_each_members_history_in_time_order():
  keys = np.array(["a", "b", "a", "a", "b"], object)
  times = np.array([30, 5, 10, 20, 1])
  assert tasks_lib.window_keys(keys, times, 2).tolist() == ["a#1", "b#0", "a#0", "a#0", "b#0"]


def test_training_tasks_windows_cover_every_interaction_once():
  data = _interactions()
  settings = task_settings.TaskSettings(window=2, max_support=1, max_query=1)
  tasks = tasks_lib.training_tasks(data, settings)
  assert int(tasks.support_sizes.sum() + tasks.query_sizes.sum()) == len(ROWS)
  # Padded to a full window's sides (1 support + 1 query), whatever the longest task.
  assert tasks.arrays[_key(tensor_layout.SUPPORT, tensor_layout.MASK)].shape == (len(tasks), 1)
  assert tasks.arrays[_key(tensor_layout.QUERY, tensor_layout.MASK)].shape == (len(tasks), 1)
  with pytest.raises(ValueError, match="needs 'member_key'"):
    tasks_lib.training_tasks(_interactions(with_key=False), settings)


def test_training_tasks_drop_members_below_min_interactions():
  data = _interactions()
  counts = {k: int((data[preprocessing.MEMBER_KEY] == k).sum())
            for k in set(data[preprocessing.MEMBER_KEY])}
  threshold = max(counts.values())
  tasks = tasks_lib.training_tasks(data, task_settings.TaskSettings(min_interactions=threshold))
  assert tasks.dropped_members == {
      "too_few_interactions": sum(n < threshold for n in counts.values())}
  with pytest.raises(ValueError, match="no task left"):
    tasks_lib.training_tasks(data, task_settings.TaskSettings(min_interactions=threshold + 1))


def test_latest_first_keeps_the_latest_in_time_order():
  assert tasks_lib.latest_first(np.array([5, 1, 9, 3]), 2).tolist() == [0, 2]
  assert tasks_lib.latest_first(np.array([5, 1]), 0).tolist() == []
  assert tasks_lib.latest_first(np.array([5, 1]), 9).tolist() == [1, 0]


def test_pad_sides_pads_and_cuts():
  tasks = tasks_lib.build_tasks(_interactions(), min_interactions=1)
  padded = tasks_lib.pad_sides(tasks, 5, 1)
  support_mask = padded.arrays[_key(tensor_layout.SUPPORT, tensor_layout.MASK)]
  assert support_mask.shape == (len(tasks), 5)
  np.testing.assert_array_equal(support_mask.sum(axis=1), tasks.support_sizes)
  assert padded.arrays[_key(tensor_layout.QUERY, tensor_layout.ITEM_FEATURES)].shape[1] == 1


@pytest.fixture(scope="module")
def synthetic_training_period():
  """Per-interaction arrays of a synthetic data set (the pandas preprocessing path)."""
  data = synthetic.generate(num_members=120, num_items=40, seed=3)
  pre = preprocessing.Preprocessor(data.spec).fit(data.interactions)
  return pre.transform(data.interactions)


def test_training_tasks_use_every_training_interaction_once(synthetic_training_period):
  train = synthetic_training_period
  tasks = tasks_lib.training_tasks(train, task_settings.TaskSettings(window=10))
  assert tasks.support_sizes.sum() + tasks.query_sizes.sum() == len(train["label"])
  assert (tasks.support_sizes + tasks.query_sizes <= 10).all()
  assert tasks.arrays["support_mask"].shape[1] == 5


@pytest.mark.parametrize("history", [3, 10])
def test_history_tasks_query_every_interaction_once_after_its_history(
    synthetic_training_period, history):
  train = synthetic_training_period
  tasks = tasks_lib.training_tasks(train, task_settings.TaskSettings(window=5,
                                                                     task_history=history))
  assert tasks.query_sizes.sum() == len(train["label"])
  assert (tasks.query_sizes <= 5).all() and (tasks.support_sizes <= history).all()
  assert tasks.arrays["support_mask"].shape[1] == history
  assert tasks.arrays["query_mask"].shape[1] == 5
  members = set(train[preprocessing.MEMBER_KEY])
  # One cold-start task (the first window) per member, every other window has history.
  first = np.array([str(k).endswith("#0") for k in tasks.member_ids])
  assert (tasks.support_sizes[first] == 0).all() and first.sum() == len(members)
  assert (tasks.support_sizes[~first] == history).sum() > 0
  # The support is the member's interactions just before the window, in time order.
  by_member = {}
  order = np.lexsort((np.arange(len(train["label"])), train[preprocessing.TIMESTAMP],
                      train[preprocessing.MEMBER_KEY]))
  for row in order:
    by_member.setdefault(train[preprocessing.MEMBER_KEY][row], []).append(
        train[tensor_layout.ITEM_ID][row])
  arrays = tasks.arrays
  for t in range(0, len(tasks), 11):
    member, chunk = str(tasks.member_ids[t]).rsplit("#", 1)
    items = by_member[member]
    begin = int(chunk) * 5
    np.testing.assert_array_equal(arrays["query_item_id"][t, :tasks.query_sizes[t]],
                                  items[begin:begin + 5])
    np.testing.assert_array_equal(arrays["support_item_id"][t, :tasks.support_sizes[t]],
                                  items[max(0, begin - history):begin])

