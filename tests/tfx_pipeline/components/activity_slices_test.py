"""Tests of ActivitySlices: the activity bucket of every evaluation example, in Beam and TFX."""

import glob
import os

import apache_beam as beam
import pytest
import tensorflow as tf
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from limaml_keras import metrics
from tfx_pipeline.components import activity_slices


def _example(member, label=1, **extra):
  example = tf.train.Example()
  feature = example.features.feature
  if isinstance(member, int):
    feature["member_id"].int64_list.value.append(member)
  elif member is not None:
    feature["member_id"].bytes_list.value.append(member.encode())
  feature["label"].int64_list.value.append(label)
  for name, value in extra.items():
    feature[name].bytes_list.value.append(value.encode())
  return example.SerializeToString()


def _write_split(root, split, records):
  directory = os.path.join(root, f"Split-{split}")
  os.makedirs(directory)
  with tf.io.TFRecordWriter(os.path.join(directory, "data.gz"),
                            tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
    for record in records:
      writer.write(record)
  return directory


def _read(pattern):
  files = glob.glob(pattern)
  assert files, pattern
  return [tf.train.Example.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _bucket_of(example):
  feature = example.features.feature
  return feature[activity_slices.ACTIVITY_FEATURE].bytes_list.value[0].decode()


def _member(example):
  return activity_slices.member_key(example.SerializeToString()).decode()


# Training-period interactions per member: one per bucket edge around 1-5, 6-20, >20.
TRAIN_COUNTS = {1: 1, 2: 5, 3: 6, 4: 20, "s": 21}
EXPECTED = {"1": "1-5", "2": "1-5", "3": "6-20", "4": "6-20", "s": ">20", "new": "0"}


@pytest.fixture
def examples_root(tmp_path):
  root = tmp_path / "examples"
  train = [_example(m) for m, n in TRAIN_COUNTS.items() for _ in range(n)]
  evaluation = [_example(m, label=i % 2) for i, m in enumerate([1, 2, 3, 4, "s", "new", "new"])]
  _write_split(str(root), "train", train)
  _write_split(str(root), "eval", evaluation)
  return root


def test_bucket_edges_match_the_metrics_segments():
  assert [activity_slices.activity_bucket(n) for n in (0, 1, 5, 6, 20, 21, 500)] == [
      "0", "1-5", "1-5", "6-20", "6-20", ">20", ">20"]
  assert set(activity_slices.activity_bucket(n) for n in range(30)) == set(metrics.SEGMENTS)


def test_member_key_renders_ids_as_the_transform_does():
  assert activity_slices.member_key(_example(42)) == b"42"
  assert activity_slices.member_key(_example("u-1")) == b"u-1"
  with pytest.raises(ValueError, match="one integer or string 'member_id'"):
    activity_slices.member_key(_example(None))


def test_reserved_feature_in_the_data_is_refused():
  with pytest.raises(ValueError, match="has a column 'member_activity' already"):
    activity_slices.with_activity(_example(1, member_activity="x"), "0")


@pytest.mark.slow
def test_beam_job_tags_every_eval_example(examples_root, tmp_path):
  out = tmp_path / "out"
  with beam.Pipeline() as pipeline:
    activity_slices.build_activity_pipeline(pipeline, str(examples_root / "Split-train"),
                                            str(examples_root / "Split-eval"), str(out))
  tagged = _read(str(out / "Split-eval" / "*"))
  assert sorted(_member(e) for e in tagged) == sorted(["1", "2", "3", "4", "s", "new", "new"])
  assert {_member(e): _bucket_of(e) for e in tagged} == EXPECTED
  # The original features are kept unchanged.
  labels = sorted(e.features.feature["label"].int64_list.value[0] for e in tagged)
  assert labels == sorted(i % 2 for i in range(7))


def _run_component(examples_uri, split_names, out_uri):
  examples = standard_artifacts.Examples()
  examples.uri = examples_uri
  examples.split_names = artifact_utils.encode_split_names(split_names)
  sliced = standard_artifacts.Examples()
  sliced.uri = out_uri
  executor = activity_slices.ActivitySlices.EXECUTOR_SPEC.executor_class()
  executor.Do({"examples": [examples]}, {"sliced_examples": [sliced]}, {})
  return sliced


@pytest.mark.slow
def test_component_writes_an_eval_examples_artifact(examples_root, tmp_path):
  sliced = _run_component(str(examples_root), ["train", "eval"], str(tmp_path / "out"))
  assert artifact_utils.decode_split_names(sliced.split_names) == ["eval"]
  assert sliced.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
  tagged = _read(os.path.join(artifact_utils.get_split_uri([sliced], "eval"), "*"))
  assert len(tagged) == 7


def test_component_names_a_missing_split(examples_root, tmp_path):
  with pytest.raises(ValueError, match=r"missing \['train'\]"):
    _run_component(str(examples_root), ["eval"], str(tmp_path / "out"))
