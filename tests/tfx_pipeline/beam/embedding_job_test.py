"""The meta-embeddings Beam job on a tiny exported model and synthetic task records.

One module-scoped run through `limaml embeddings generate` (DirectRunner)
feeds the checks of both outputs against `adapt` called in-process; the bad
inputs fail before any pipeline starts.
"""

import contextlib
import glob
import io
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest
import tensorflow as tf

from limaml import cli
from limaml_keras import serving_contract
from limaml_keras import tensor_layout
from tfx_pipeline.beam import embedding_job
from tfx_pipeline.components import task_records
from tfx_pipeline import testing
from tfx_pipeline.models import export

from tests.benchmarks import scripts

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

NUM_MEMBERS = 25
MAX_SUPPORT = 4
VERSION = "v7"


# `benchmarks/embedding_job.py`, whose tiny-model and task-record helpers the tests share.
bench = scripts.load("embedding_job")


def _generate(capsys, *argv):
  code = cli.main(["embeddings", "generate", *argv])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


@pytest.fixture(scope="module")
def job(tmp_path_factory):
  root = tmp_path_factory.mktemp("embeddings")
  model_dir = str(root / "model")
  keras_model = bench.export_tiny_model(model_dir)
  tasks = str(root / "tasks.gz")
  written = bench.write_task_records(tasks, NUM_MEMBERS, max_support=MAX_SUPPORT)
  output = str(root / "out")
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    code = cli.main(["embeddings", "generate", "--model", model_dir, "--tasks",
                     str(root / "*.gz"), "--output", output, "--model-version", VERSION,
                     "--batch-size", "8", "--beam-arg=--runner=DirectRunner"])
  assert code == 0, stdout.getvalue()
  return {"root": root, "model_dir": model_dir, "keras_model": keras_model, "tasks": tasks,
          "written": written, "output": output,
          "summary": json.loads(stdout.getvalue().strip().splitlines()[-1])}


def _tfrecord_rows(output):
  files = glob.glob(os.path.join(output, "*" + embedding_job.TFRECORD_SUFFIX))
  assert files
  rows = []
  for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
    feature = tf.train.Example.FromString(record.numpy()).features.feature
    rows.append({
        embedding_job.MEMBER_ID: feature[embedding_job.MEMBER_ID].bytes_list.value[0].decode(),
        tensor_layout.META_EMBEDDING: list(feature[tensor_layout.META_EMBEDDING].float_list.value),
        embedding_job.SUPPORT_SIZE: feature[embedding_job.SUPPORT_SIZE].int64_list.value[0],
        embedding_job.AS_OF_TIMESTAMP:
            feature[embedding_job.AS_OF_TIMESTAMP].int64_list.value[0],
        embedding_job.MODEL_VERSION:
            feature[embedding_job.MODEL_VERSION].bytes_list.value[0].decode()})
  return rows


def _parquet_rows(output):
  files = glob.glob(os.path.join(output, "*" + embedding_job.PARQUET_SUFFIX))
  assert files
  return [row for f in files for row in pq.read_table(f).to_pylist()]


@pytest.fixture(scope="module")
def expected(job):
  """Member key -> in-process `adapt` embedding of the exported model."""
  embeddings = bench.adapt_in_process(job["model_dir"], job["tasks"], batch_size=NUM_MEMBERS)
  return dict(zip(job["written"][task_records.MEMBER_KEY], embeddings))


@pytest.mark.parametrize("read", [_tfrecord_rows, _parquet_rows], ids=["tfrecord", "parquet"])
def test_one_row_per_member_equal_to_in_process_adapt(job, expected, read):
  rows = read(job["output"])
  assert sorted(r[embedding_job.MEMBER_ID] for r in rows) == sorted(expected)
  sizes = dict(zip(job["written"][task_records.MEMBER_KEY],
                   job["written"][task_records.SUPPORT_SIZE]))
  for row in rows:
    member = row[embedding_job.MEMBER_ID]
    np.testing.assert_allclose(row[tensor_layout.META_EMBEDDING], expected[member], rtol=1e-5,
                               atol=1e-6, err_msg=member)
    assert row[embedding_job.SUPPORT_SIZE] == sizes[member]
    assert row[embedding_job.AS_OF_TIMESTAMP] == 0  # TaskGen records carry no timestamps.
    assert row[embedding_job.MODEL_VERSION] == VERSION


def test_counters_and_cli_summary(job):
  sizes = job["written"][task_records.SUPPORT_SIZE]
  expected_counters = {embedding_job.MEMBERS: NUM_MEMBERS,
                       embedding_job.EMPTY_SUPPORTS: int((sizes == 0).sum()),
                       embedding_job.TRUNCATED_SUPPORTS: int((sizes == MAX_SUPPORT).sum())}
  assert min(expected_counters.values()) > 0
  assert job["summary"] == {"output": os.path.abspath(job["output"]), "model_version": VERSION,
                            **expected_counters}


def test_empty_support_gets_the_cold_start_embedding(job):
  rows = _parquet_rows(job["output"])
  cold = [r for r in rows if r[embedding_job.SUPPORT_SIZE] == 0]
  assert cold
  index = {k: t for t, k in enumerate(job["written"][task_records.MEMBER_KEY])}
  member_features = job["written"][tensor_layout.MEMBER_FEATURES][
      [index[r[embedding_job.MEMBER_ID]] for r in cold]]
  cold_start = job["keras_model"].embed(member_features).numpy()
  np.testing.assert_allclose([r[tensor_layout.META_EMBEDDING] for r in cold], cold_start,
                             rtol=1e-5, atol=1e-6)
  warm = [r for r in rows if r[embedding_job.SUPPORT_SIZE] > 0][0]
  warm_member = job["written"][tensor_layout.MEMBER_FEATURES][[index[warm[embedding_job.MEMBER_ID]]]]
  assert not np.allclose(warm[tensor_layout.META_EMBEDDING],
                         job["keras_model"].embed(warm_member).numpy()[0])


def test_as_of_timestamp_is_the_latest_real_support_timestamp(job):
  [serialized] = [r.numpy() for r in tf.data.TFRecordDataset(
      job["tasks"], compression_type="GZIP").skip(2).take(1)]  # Member 2: two real supports.
  example = tf.train.Example.FromString(serialized)
  example.features.feature[embedding_job.SUPPORT_TIMESTAMP].int64_list.value.extend(
      [30, 50, 99, 99])
  parsed = embedding_job.parse_members([example.SerializeToString()])
  assert embedding_job._as_of(parsed).tolist() == [50]  # pylint: disable=protected-access


def test_bad_inputs_give_clear_errors(job, capsys, tmp_path):
  good = ["--model", job["model_dir"], "--tasks", job["tasks"], "--output", str(tmp_path / "o")]

  def error_of(**replace):
    argv = list(good)
    for flag, value in replace.items():
      argv[argv.index(f"--{flag}") + 1] = value
    code, _, err = _generate(capsys, *argv)
    assert code == 1
    return err

  assert "no task record files match" in error_of(tasks=str(tmp_path / "missing-*.gz"))
  empty = tmp_path / "empty.gz"
  with tf.io.TFRecordWriter(str(empty), "GZIP"):
    pass
  assert "no task record in" in error_of(tasks=str(empty))
  assert "is not a SavedModel directory" in error_of(model=str(tmp_path))
  no_adapt = str(tmp_path / "no_adapt")
  module = tf.Module()
  module.serve = tf.function(lambda x: {"y": x + 1.0},
                             input_signature=[tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(module, no_adapt, signatures={"serving_default": module.serve})
  assert "has no 'adapt' signature" in error_of(model=no_adapt)
  with pytest.raises(ValueError, match="has no 'adapt' signature"):
    embedding_job.AdaptFn(no_adapt).setup()
  assert not os.path.exists(tmp_path / "o")


def _save_adapt_without_member_id(model, path, extra=()):
  """A SavedModel whose `adapt` takes the inputs of exports before session 11 (no `member_id`)."""
  specs = export._adapt_input_signature(model)[1:] + list(extra)  # pylint: disable=protected-access

  @tf.function(input_signature=specs)
  def adapt(*inputs):  # member_features, the support tensors, then `extra`
    batch = dict(zip(serving_contract.ADAPT_INPUTS[1:], inputs))
    return {tensor_layout.META_EMBEDDING: model.adapt_embeddings(batch)}

  module = tf.Module()
  module.model = model
  tf.saved_model.save(module, path, signatures={"adapt": adapt.get_concrete_function()})
  return path


def test_models_exported_before_adapt_took_member_id_still_adapt(job, capsys, tmp_path):
  old = _save_adapt_without_member_id(job["keras_model"], str(tmp_path / "old"))
  code, _, err = _generate(capsys, "--model", old, "--tasks", job["tasks"],
                           "--output", str(tmp_path / "o"), "--model-version", VERSION)
  assert code == 0, err
  rows = {r[embedding_job.MEMBER_ID]: r for r in _parquet_rows(str(tmp_path / "o"))}
  for row in _parquet_rows(job["output"]):  # The model has no ID table: the same embeddings.
    np.testing.assert_allclose(rows[row[embedding_job.MEMBER_ID]][tensor_layout.META_EMBEDDING],
                               row[tensor_layout.META_EMBEDDING], rtol=1e-5, atol=1e-6)


def test_an_adapt_input_the_job_cannot_provide_is_named(job, tmp_path):
  path = _save_adapt_without_member_id(
      job["keras_model"], str(tmp_path / "odd"), [tf.TensorSpec([None], tf.float32, name="nope")])
  _, adapt = embedding_job.load_adapt(path)
  with pytest.raises(ValueError, match=r"'adapt' signature takes \['nope'\], which the "
                                       "meta-embedding job does not provide"):
    embedding_job.adapt_input_keys(adapt)
  with pytest.raises(ValueError, match=r"signature takes \['nope'\]"):  # Before any record.
    embedding_job.AdaptFn(path).setup()


def test_records_of_different_padded_lengths_are_rejected(job, tmp_path):
  other = str(tmp_path / "other.gz")
  bench.write_task_records(other, 2, max_support=MAX_SUPPORT + 1)
  records = [r.numpy() for pattern in (job["tasks"], other)
             for r in tf.data.TFRecordDataset(pattern, compression_type="GZIP").take(1)]
  with pytest.raises(ValueError, match="must share padded lengths"):
    embedding_job.parse_members(records)


def test_model_version_defaults_to_the_model_directory_name(job, capsys, tmp_path):
  code, out, err = _generate(capsys, "--model", job["model_dir"], "--tasks", job["tasks"],
                             "--output", str(tmp_path / "o"))
  assert code == 0, err
  assert json.loads(out.strip().splitlines()[-1])[embedding_job.MEMBERS] == NUM_MEMBERS
  assert {r[embedding_job.MODEL_VERSION] for r in _parquet_rows(str(tmp_path / "o"))} == {
      "model"}


@pytest.mark.parametrize("row", [
    {embedding_job.MEMBER_ID: "member-1", tensor_layout.META_EMBEDDING: [1.5, -2.0, 3e-8],
     embedding_job.SUPPORT_SIZE: 300, embedding_job.AS_OF_TIMESTAMP: -5,
     embedding_job.MODEL_VERSION: "v7"},
    {embedding_job.MEMBER_ID: "", tensor_layout.META_EMBEDDING: [],
     embedding_job.SUPPORT_SIZE: 0, embedding_job.AS_OF_TIMESTAMP: 1_700_000_000,
     embedding_job.MODEL_VERSION: "é"},
])
def test_to_example_is_the_deterministic_protobuf_serialization(row):
  example = tf.train.Example()
  feature = example.features.feature
  feature[embedding_job.MEMBER_ID].bytes_list.value.append(row[embedding_job.MEMBER_ID].encode())
  feature[tensor_layout.META_EMBEDDING].float_list.value.extend(row[tensor_layout.META_EMBEDDING])
  feature[embedding_job.SUPPORT_SIZE].int64_list.value.append(row[embedding_job.SUPPORT_SIZE])
  feature[embedding_job.AS_OF_TIMESTAMP].int64_list.value.append(
      row[embedding_job.AS_OF_TIMESTAMP])
  feature[embedding_job.MODEL_VERSION].bytes_list.value.append(
      row[embedding_job.MODEL_VERSION].encode())
  assert embedding_job.to_example(row) == example.SerializeToString(deterministic=True)



def test_reruns_are_byte_identical_whatever_the_file_layout(job, tmp_path):
  records = [r.numpy() for r in tf.data.TFRecordDataset(job["tasks"], compression_type="GZIP")]
  for name, parts in (("one", [records[::-1]]), ("two", [records[1::2], records[::2]])):
    os.makedirs(tmp_path / name)
    for j, part in enumerate(parts):
      with tf.io.TFRecordWriter(str(tmp_path / name / f"{j}.gz"), "GZIP") as writer:
        for record in part:
          writer.write(record)
  sums = []
  for name in ("one", "two"):
    output = str(tmp_path / f"out-{name}")
    embedding_job.run(job["model_dir"], str(tmp_path / name / "*.gz"), output, VERSION,
                      batch_size=8, rows_per_shard=10)
    sums.append(testing.checksums(output))
  assert sums[0] == sums[1]
  assert embedding_job.SPILL_DIR not in os.listdir(tmp_path / "out-one")  # Spill files removed.
  assert sorted(sums[0]) == [embedding_job.COUNTERS_FILE] + sorted(
      embedding_job.shard_name(s, 3, suffix) for s in range(3)
      for suffix in (embedding_job.PARQUET_SUFFIX, embedding_job.TFRECORD_SUFFIX))


def test_a_file_is_counted_and_read_in_parsed_batches(job, tmp_path):
  assert embedding_job.count_records(job["tasks"]) == NUM_MEMBERS
  batches = list(embedding_job.read_member_columns(job["tasks"]))
  keys = np.concatenate([b[task_records.MEMBER_KEY] for b in batches])
  assert [k.decode() for k in keys] == list(job["written"][task_records.MEMBER_KEY])
  assert batches[0][tensor_layout.MEMBER_FEATURES].shape == (
      NUM_MEMBERS, job["written"][tensor_layout.MEMBER_FEATURES].shape[1])
  empty = str(tmp_path / "empty.gz")
  with tf.io.TFRecordWriter(empty, "GZIP"):
    pass
  assert embedding_job.count_records(empty) == 0
  assert not list(embedding_job.read_member_columns(empty))


def test_files_of_different_padded_lengths_are_rejected(job, tmp_path):
  other = str(tmp_path / "other.gz")
  bench.write_task_records(other, 2, max_support=MAX_SUPPORT + 1)
  with pytest.raises(Exception, match="must share padded lengths"):
    embedding_job.run(job["model_dir"], [job["tasks"], other], str(tmp_path / "out"), VERSION)
  assert sorted(os.listdir(tmp_path)) == ["other.gz"]


def test_portable_runner_writes_the_same_files(job, tmp_path):
  """The runner path of Flink and Spark: byte-identical files and the same counters."""
  outputs = {}
  for name, beam_args in (("direct", ["--runner=DirectRunner"]),
                          ("portable", list(testing.PORTABLE_RUNNER_ARGS))):
    outputs[name] = str(tmp_path / name)
    counters = embedding_job.run(job["model_dir"], job["tasks"], outputs[name], VERSION,
                                 beam_args=beam_args, batch_size=8, rows_per_shard=10)
    assert counters[embedding_job.MEMBERS] == NUM_MEMBERS, name
  assert testing.checksums(outputs["direct"]) == testing.checksums(outputs["portable"])


def test_a_failed_run_leaves_no_output(job, tmp_path):
  # The same members twice: the job fails while writing (duplicate member ids).
  with pytest.raises(Exception, match="appears in more than one input record"):
    embedding_job.run(job["model_dir"], [job["tasks"], job["tasks"].replace("tasks.gz", "*.gz")],
                      str(tmp_path / "out"), VERSION)
  assert os.listdir(tmp_path) == []


def test_an_existing_output_is_refused(job, tmp_path):
  (tmp_path / "out").mkdir()
  (tmp_path / "out" / "keep.txt").write_text("x")
  with pytest.raises(ValueError, match="exists and is not an empty directory"):
    embedding_job.run(job["model_dir"], job["tasks"], str(tmp_path / "out"), VERSION)
  assert os.listdir(tmp_path / "out") == ["keep.txt"]
