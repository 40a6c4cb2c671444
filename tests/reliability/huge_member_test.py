"""A member with 100,000 interactions: capped, linear memory, no [n, n] arrays."""

import time
import tracemalloc

import numpy as np
import pytest

from limaml_keras import tensor_layout
from limaml_keras import tasks as tasks_lib
from tfx_pipeline.models import preprocessing
from tfx_pipeline.components import task_gen
from tfx_pipeline import testing

HUGE = 100_000
SMALL_MEMBERS = 2_000
DM, DI, DC = 6, 8, 2


def _interactions(seed=0):
  """One member with HUGE interactions, SMALL_MEMBERS with 3 each, one with a single one."""
  rng = np.random.default_rng(seed)
  keys = np.concatenate([np.full(HUGE, "huge", object),
                         np.repeat([f"m{i}" for i in range(SMALL_MEMBERS)], 3).astype(object),
                         np.array(["single"], object)])
  n = len(keys)
  return {
      tensor_layout.MEMBER_ID: rng.integers(1, 50, n), preprocessing.MEMBER_KEY: keys,
      tensor_layout.MEMBER_FEATURES: rng.normal(size=(n, DM)).astype(np.float32),
      tensor_layout.ITEM_ID: rng.integers(1, 1000, n),
      tensor_layout.ITEM_FEATURES: rng.normal(size=(n, DI)).astype(np.float32),
      tensor_layout.CONTEXT_FEATURES: rng.normal(size=(n, DC)).astype(np.float32),
      tensor_layout.LABEL: rng.integers(0, 2, n).astype(np.float32),
      tasks_lib.TIMESTAMP: rng.permutation(n).astype(np.int64),
  }


def _peak_bytes(fn):
  tracemalloc.start()
  try:
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    return result, tracemalloc.get_traced_memory()[1], seconds
  finally:
    tracemalloc.stop()


def test_build_tasks_caps_a_huge_member_in_linear_memory():
  data = _interactions()
  input_bytes = sum(v.nbytes for v in data.values())
  tasks, peak, seconds = _peak_bytes(lambda: tasks_lib.build_tasks(
      data, support_fraction=0.5, max_support=50, max_query=20, min_interactions=2))
  huge = list(tasks.member_ids).index("huge")
  assert (tasks.support_sizes[huge], tasks.query_sizes[huge]) == (50, 20)
  assert tasks.capped_interactions == {tensor_layout.SUPPORT: HUGE // 2 - 50,
                                       tensor_layout.QUERY: HUGE // 2 - 20}
  assert len(tasks) == SMALL_MEMBERS + 1 and tasks.dropped_members == {"too_few_interactions": 1}
  assert tasks.arrays[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.ITEM_FEATURES)].shape == (
      SMALL_MEMBERS + 1, 50, DI)
  # A sorted copy of the input plus the padded tasks; an [n, n] array would be 80 GB.
  assert peak < 3 * input_bytes, (peak, input_bytes)
  assert seconds < 10


def test_build_tasks_refuses_uncapped_padding_instead_of_running_out_of_memory():
  data = _interactions()
  with pytest.raises(ValueError, match=r"padding 2002 tasks to 1 support and 100000 query slots "
                     r"would take .* GiB .*member 'huge' has 100000 interactions: pass "
                     r"max_support and max_query"):
    tasks_lib.build_tasks(data, cutoff_time=0, max_support=None, max_query=None)


def _parsed(n, member_dim=DM, seed=0):
  rng = np.random.default_rng(seed)
  times = rng.permutation(n)
  return [{tensor_layout.MEMBER_ID: np.array([1]),
           tensor_layout.MEMBER_FEATURES: rng.normal(size=member_dim).astype(np.float32),
           tensor_layout.ITEM_ID: np.array([i % 997]),
           tensor_layout.ITEM_FEATURES: np.full(DI, t, np.float32),
           tensor_layout.CONTEXT_FEATURES: np.zeros(DC, np.float32),
           tensor_layout.LABEL: np.array([i % 2], np.float32),
           preprocessing.TIMESTAMP: np.array([t])} for i, t in enumerate(times)]


def _serialized(interactions, member_key=b"huge"):
  """Transformed tf.Example records (what TaskGen's member shuffle carries)."""
  return [testing.transformed_record(member_key, interaction) for interaction in interactions]


@pytest.mark.slow
def test_task_gen_handles_a_huge_member_a_window_at_a_time():
  settings = task_gen.TaskSettings(window=40, support_fraction=0.5, max_support=20, max_query=20,
                                   min_interactions=2)
  train, evaluation = _parsed(HUGE), _parsed(1_000, seed=1)
  element = (b"huge", {task_gen.TRAIN_SPLIT: _serialized(train),
                        task_gen.EVAL_SPLIT: _serialized(evaluation)})
  make_tasks = task_gen._MakeTasks(settings)  # pylint: disable=protected-access
  seen = {task_gen.TRAIN_SPLIT: [0, 0, 0], task_gen.EVAL_SPLIT: [0, 0, 0]}
  eval_summary = {}

  def consume():  # What Beam does: take each output as it comes, keep none.
    for output in make_tasks.process(element):
      if output.tag == "summary":
        split, summary = output.value
        seen[split][1] += summary["support"] + summary["query"]
        seen[split][2] += summary["capped_support"] + summary["capped_query"]
        if split == task_gen.EVAL_SPLIT:
          eval_summary.update(summary)
      else:
        seen[output.tag][0] += 1

  _, peak, seconds = _peak_bytes(consume)
  # Training: every interaction in one window of 40 (20 support + 20 query), none capped.
  assert seen[task_gen.TRAIN_SPLIT] == [HUGE // 40, HUGE, 0]
  # Evaluation: the latest 20 training interactions as support, the earliest 20 later ones.
  assert {k: eval_summary[k] for k in ("support", "query", "capped_support", "capped_query")} == {
      "support": 20, "query": 20, "capped_support": HUGE - 20, "capped_query": 1_000 - 20}
  # The first training window is the earliest 40 interactions in time.
  first = next(task_gen.train_tasks(b"huge", train, settings))
  support_times = first.arrays[tensor_layout.side_key(tensor_layout.SUPPORT,
                                                      tensor_layout.ITEM_FEATURES)]
  np.testing.assert_array_equal(support_times[0, :, 0], np.arange(20))
  # One sort of 100,000 timestamps plus one batch of windows at a time, not the
  # member's rows stacked (28 MB when every interaction was stacked at once).
  assert peak < 8 * 2**20, peak
  assert seconds < 60, seconds  # Linear: about 11 s without tracemalloc on 2 shared cores.


def test_zero_support_member_is_a_cold_start_eval_task():
  settings = task_gen.TaskSettings(max_support=20, max_query=20, min_interactions=2)
  task = task_gen.eval_task(b"new", [], _parsed(3), settings)
  assert int(task.support_sizes[0]) == 0 and int(task.query_sizes[0]) == 3
  assert task.cold_start.tolist() == [True]
  assert task.arrays[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.MASK)].sum() == 0
