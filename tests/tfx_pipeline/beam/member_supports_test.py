"""The meta-embedding job on interactions: raw CSVs and transformed examples.

A tiny real Transform graph (`tfx_pipeline.testing`) and an untrained model
exported as the Trainer exports it. Supports are checked against TaskGen's
own support construction (`task_gen.eval_task`, built on
`limaml_keras.tasks.build_tasks`), the CSV and transformed-example inputs
against each other, and reruns against checksums.
"""

import csv
import glob
import os
import random

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
from apache_beam.internal import pickler

from limaml_keras import tensor_layout
from tfx_pipeline.beam import embedding_job
from tfx_pipeline.models import export
from tfx_pipeline.beam import member_supports as ms
from tfx_pipeline.models import preprocessing
from tfx_pipeline.components import task_gen
from tfx_pipeline.components import task_records
from tfx_pipeline import testing

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

MAX_SUPPORT = 3
HEADER = list(testing.RAW_FEATURE_SPEC)
# member 7: 5 interactions (truncated to the latest 3), member 8: 2, member 9: 1 (unknown
# to the Transform vocabulary: member_id 0). Timestamps are distinct per member.
ROWS = [(7, "x", 10, 1, 20.0, 1990), (7, "y", 50, 0, 22.0, 2000), (8, "y", 5, 1, 40.0, 2010),
        (7, "x", 30, 1, 24.0, 1995), (7, "y", 40, 1, 26.0, 2000), (9, "x", 7, 0, 33.0, 1990),
        (7, "y", 20, 0, 28.0, 2005), (8, "x", 15, 0, 41.0, 1990)]


def write_csv(path, rows, header=HEADER):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return str(path)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp("supports")
  tft_output = testing.transform_output(str(root / "transform"))
  # With a member-ID table (random rows): each member's embedding must carry their own row.
  model = testing.untrained_model(tft_output, member_id_embedding=True)
  model_dir = export.export_serving_model(model, tft_output, str(root / "trainer"))
  transformed = testing.transformed_examples(tft_output, ROWS)
  os.makedirs(root / "transformed")
  testing.write_records(str(root / "transformed" / "a.gz"), transformed[:4])
  testing.write_records(str(root / "transformed" / "b.gz"), transformed[4:])
  return {"root": root, "tft_output": tft_output, "model_dir": model_dir,
          "transform_dir": str(root / "transform"), "transformed": transformed}



@pytest.fixture(scope="module")
def csv_run(setup):
  csv_path = write_csv(setup["root"] / "interactions.csv", ROWS)
  output = str(setup["root"] / "csv_out")
  counters = ms.run_csv(setup["model_dir"], setup["transform_dir"], [csv_path], output, "v1",
                        max_support=MAX_SUPPORT, batch_size=2)
  return {"output": output, "counters": counters, "csv": csv_path}


def _parquet(output):
  return {r[embedding_job.MEMBER_ID]: r for f in sorted(glob.glob(os.path.join(
      output, "*.parquet"))) for r in pq.read_table(f).to_pylist()}


def test_counters_and_rows(csv_run):
  assert csv_run["counters"] == {embedding_job.MEMBERS: 3, embedding_job.EMPTY_SUPPORTS: 0,
                                 embedding_job.TRUNCATED_SUPPORTS: 1, ms.ROWS_READ: 8,
                                 ms.ROWS_KEPT: 8, "duplicate_interactions": 0,
                                 "future_interactions": 0, ms.MEMBERS_ALL_DROPPED: 0,
                                 ms.MEMBERS_ONLY_UNKNOWN_ITEMS: 0, "notes": []}
  rows = _parquet(csv_run["output"])
  assert {m: (r[embedding_job.SUPPORT_SIZE], r[embedding_job.AS_OF_TIMESTAMP])
          for m, r in rows.items()} == {"7": (3, 50), "8": (2, 15), "9": (1, 7)}
  assert {r[embedding_job.MODEL_VERSION] for r in rows.values()} == {"v1"}
  assert sorted(os.listdir(csv_run["output"])) == [
      embedding_job.COUNTERS_FILE, "meta_embeddings-00000-of-00001.parquet",
      "meta_embeddings-00000-of-00001.tfrecord.gz"]
  assert not [p for p in os.listdir(os.path.dirname(csv_run["output"])) if ".tmp-" in p]


def test_embeddings_equal_adapt_on_taskgen_supports(setup, csv_run):
  """The job's support for a member is TaskGen's eval support (latest MAX_SUPPORT by time)."""
  _, adapt = embedding_job.load_adapt(setup["model_dir"])
  settings = task_gen.TaskSettings(window=2, max_support=MAX_SUPPORT, max_query=1)
  by_member = {}
  for record in setup["transformed"]:
    key, interaction = task_gen.parse_interaction(record)
    by_member.setdefault(key, []).append(interaction)
  rows = _parquet(csv_run["output"])
  for key, interactions in by_member.items():
    later = dict(interactions[0], timestamp=np.array([10 ** 9]))  # A dummy query.
    task = task_gen.eval_task(key, interactions, [later], settings)
    inputs = embedding_job.adapt_inputs({k: tf.constant(np.asarray(v))  # Padded, one task.
                                         for k, v in task.arrays.items()})
    expected = adapt(**inputs)[tensor_layout.META_EMBEDDING].numpy()[0]
    np.testing.assert_allclose(rows[key.decode()][tensor_layout.META_EMBEDDING], expected,
                               rtol=1e-5, atol=1e-6)
    assert rows[key.decode()][embedding_job.SUPPORT_SIZE] == task.support_sizes[0]
    as_unknown = dict(inputs, member_id=tf.zeros_like(inputs[tensor_layout.MEMBER_ID]))
    member_row_differs = not np.allclose(
        adapt(**as_unknown)[tensor_layout.META_EMBEDDING].numpy()[0], expected)
    assert member_row_differs == (key != b"9")  # Member 9 is unknown: row 0 either way.


def test_transformed_input_and_reruns_give_identical_files(setup, csv_run, tmp_path):
  pattern = str(setup["root"] / "transformed" / "*")
  first = str(tmp_path / "first")
  counters = ms.run_transformed(setup["model_dir"], [pattern], first, "v1",
                                max_support=MAX_SUPPORT, batch_size=2)
  assert counters == {k: csv_run["counters"][k] for k in embedding_job.COUNTERS}
  assert testing.checksums(first) == testing.checksums(csv_run["output"])
  # The same input in another order and file layout, in several shards: identical reruns.
  shuffled = list(setup["transformed"])
  random.Random(1).shuffle(shuffled)
  testing.write_records(str(tmp_path / "shuffled.gz"), shuffled)
  runs = []
  for name, pattern in (("second", str(tmp_path / "shuffled.gz")), ("third", pattern)):
    output = str(tmp_path / name)
    ms.run_transformed(setup["model_dir"], [pattern], output, "v1", max_support=MAX_SUPPORT,
                       batch_size=2, rows_per_shard=1)
    runs.append(testing.checksums(output))
  assert runs[0] == runs[1]
  assert len([n for n in runs[0] if n.endswith(".parquet")]) == 3  # One of them empty.
  assert sorted(_parquet(str(tmp_path / "second"))) == ["7", "8", "9"]


def test_portable_runner_writes_what_the_direct_runner_writes(setup, csv_run, tmp_path):
  """CSV reading, the Transform graph, the per-member combiner and the side input, on the
  runner path of Flink and Spark: byte-identical files and the same counters."""
  output = str(tmp_path / "portable")
  counters = ms.run_csv(setup["model_dir"], setup["transform_dir"], [csv_run["csv"]], output,
                        "v1", max_support=MAX_SUPPORT, batch_size=2,
                        beam_args=list(testing.PORTABLE_RUNNER_ARGS))
  assert counters == csv_run["counters"]
  assert testing.checksums(output) == testing.checksums(csv_run["output"])


def test_latest_interactions_combiner_is_order_independent():
  rng = np.random.default_rng(0)
  interactions = [{preprocessing.TIMESTAMP: np.array([t]), tensor_layout.ITEM_ID: np.array([t % 3]),
                   tensor_layout.LABEL: np.array([1.0], np.float32),
                   tensor_layout.ITEM_FEATURES: rng.normal(size=2).astype(np.float32),
                   tensor_layout.CONTEXT_FEATURES: np.zeros(0, np.float32),
                   tensor_layout.MEMBER_FEATURES: np.ones(1, np.float32),
                   tensor_layout.MEMBER_ID: np.array([1])} for t in (5, 1, 9, 9, 3, 7)]
  fn = pickler.loads(pickler.dumps(ms.LatestInteractionsFn(3)))
  results = set()
  for seed in range(5):
    order = list(interactions)
    random.Random(seed).shuffle(order)
    halves = [fn.create_accumulator(), fn.create_accumulator()]
    for j, interaction in enumerate(order):
      halves[j % 2] = fn.add_input(halves[j % 2], ms.order_key(interaction))
    count, latest = fn.extract_output(fn.merge_accumulators(halves))
    assert count == 6
    results.add(tuple(latest))
  assert len(results) == 1
  assert [key[0] for key in results.pop()] == [7, 9, 9]


def test_order_key_holds_the_whole_interaction(setup):
  for record in setup["transformed"]:
    _, interaction = task_gen.parse_interaction(record)
    restored = ms.interaction_of(ms.order_key(interaction))
    assert restored.keys() == interaction.keys()
    for key, value in interaction.items():
      np.testing.assert_array_equal(restored[key], value, err_msg=key)
      assert restored[key].dtype == value.dtype, key


def test_support_record_is_a_task_record(setup):
  _, interaction = task_gen.parse_interaction(setup["transformed"][0])
  record = ms.support_record(b"7", (1, [interaction]), MAX_SUPPORT)
  task_format = task_records.format_of(record)
  assert (task_format.support_length, task_format.query_length) == (MAX_SUPPORT, 0)
  parsed = embedding_job.parse_members([record])
  assert parsed[embedding_job.SUPPORT_TIMESTAMP].numpy().tolist() == [[10, 0, 0]]
  assert parsed[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.MASK)].numpy().tolist() == [
      [1, 0, 0]]


@pytest.mark.parametrize("rows,header,message", [
    (ROWS, HEADER + ["colour"], r"unknown columns \['colour'\]"),
    ([r[:-1] for r in ROWS], HEADER[:-1], r"missing columns \['year'\]"),
    ([], HEADER, "no data rows"),
    ([(7, "x", 10, 2, 20.0, 1990)], HEADER, "line 2: column 'label' must be 0 or 1"),
    ([(7, "x", "soon", 1, 20.0, 1990)], HEADER, "column 'timestamp' must hold whole Unix"),
    ([(7, "x", 10, 1, "old", 1990)], HEADER, "column 'age' must be numeric"),
])
def test_bad_csv_gives_a_clear_error_and_no_output(setup, tmp_path, rows, header, message):
  if len(header) > len(HEADER):
    rows = [r + ("red",) for r in rows]
  path = write_csv(tmp_path / "bad.csv", rows, header)
  output = tmp_path / "out"
  with pytest.raises(ValueError, match=message):
    ms.run_csv(setup["model_dir"], setup["transform_dir"], [path], str(output), "v1")
  assert not output.exists()
  assert os.listdir(tmp_path) == ["bad.csv"]  # No staging directory left either.


def test_dropped_rows_and_skipped_members_are_counted_and_noted(setup, tmp_path):
  rows = ROWS + [ROWS[1],  # A duplicate of member 7's row.
                 (8, "x", 5_000, 1, 41.0, 1990),  # Later than the as-of time.
                 (11, "y", 6_000, 0, 30.0, 1990),  # Member 11: all rows dropped.
                 (12, "zz", 12, 1, 30.0, 1990), (12, "ww", 13, 0, 30.0, 1990)]  # Unknown items.
  path = write_csv(tmp_path / "in.csv", rows)
  output = str(tmp_path / "out")
  result = ms.run_csv(setup["model_dir"], setup["transform_dir"], [path], output, "v1",
                      max_support=MAX_SUPPORT, as_of=1_000)
  assert result[ms.ROWS_READ] == len(rows) and result[ms.ROWS_KEPT] == len(ROWS) + 2
  assert result["duplicate_interactions"] == 1 and result["future_interactions"] == 2
  assert result[ms.MEMBERS_ALL_DROPPED] == 1 and result[ms.MEMBERS_ONLY_UNKNOWN_ITEMS] == 1
  assert result[embedding_job.MEMBERS] == 3
  assert sorted(_parquet(output)) == ["7", "8", "9"]
  notes = result["notes"]
  assert f"dropped 1 duplicate interaction(s) (same member_id, item_id and timestamp; the " \
         f"first is kept), e.g. {path} line 10" in notes
  assert f"dropped 2 interaction(s) later than the as-of time 1000, e.g. {path} line 11 " \
         f"(timestamp 5000)" in notes
  assert ("1 member(s) had every row dropped (no embedding for them), e.g. '11'") in notes
  assert ("skipped 1 member(s) whose interactions all reference items unknown to the model "
          "(an embedding adapted on out-of-vocabulary items only would be noise; they keep "
          "their served embedding or the cold-start path), e.g. '12'") in notes


def test_millisecond_timestamps_get_a_hint(setup, tmp_path):
  path = write_csv(tmp_path / "in.csv", [(7, "x", 1_700_000_000_000, 1, 20.0, 1990)])
  with pytest.raises(ValueError, match="timestamps look like milliseconds; divide by 1000"):
    ms.run_csv(setup["model_dir"], setup["transform_dir"], [path], str(tmp_path / "o"), "v1")


def test_missing_and_empty_inputs(setup, tmp_path):
  empty = tmp_path / "empty.csv"
  empty.write_text("")
  with pytest.raises(ValueError, match="the file is empty"):
    ms.run_csv(setup["model_dir"], setup["transform_dir"], [str(empty)], str(tmp_path / "o"),
               "v1")
  with pytest.raises(FileNotFoundError, match="no interaction file matches"):
    ms.run_csv(setup["model_dir"], setup["transform_dir"], [str(tmp_path / "*.nope")],
               str(tmp_path / "o"), "v1")
  with pytest.raises(FileNotFoundError, match="no transformed example files match"):
    ms.run_transformed(setup["model_dir"], [str(tmp_path / "none-*")], str(tmp_path / "o"), "v1")
  with pytest.raises(ValueError, match="max_support must be a whole number >= 1"):
    ms.run_transformed(setup["model_dir"], [str(setup["root"] / "transformed" / "*")],
                       str(tmp_path / "o"), "v1", max_support=0)


def test_transformed_examples_of_another_layout_are_rejected(setup, tmp_path):
  example = tf.train.Example()
  example.features.feature["member_key"].bytes_list.value.append(b"7")
  with pytest.raises(ValueError, match=r"lacks features \['member_id'"):
    ms.parse_transformed(example.SerializeToString())
