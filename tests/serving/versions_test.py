"""Tests for serving.versions: TF1-loader versions, input checks, warmup, polling and swap."""
import os
import shutil
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving import tensors
from serving import versions
from serving.versions import ServingError
from tests.serving_fixtures import add_version
from tests.serving_fixtures import request_examples

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow


def _examples(saved_models, **kwargs):
  return np.array(request_examples(saved_models.feature_spec, **kwargs), dtype=object)


@pytest.fixture(scope="module")
def loaded(saved_models):
  version = versions.LoadedVersion(1, saved_models.personalised_v1)
  yield version
  version.retire()


def test_run_serving_default(loaded, saved_models):
  outputs = loaded.run("", {"examples": _examples(saved_models)})
  assert sorted(outputs) == ["logits", "personalised", "probabilities"]
  assert outputs["personalised"].tolist() == [True, True, False]
  np.testing.assert_allclose(outputs["probabilities"], 1 / (1 + np.exp(-outputs["logits"])),
                             rtol=1e-5)


def test_output_filter_and_other_signatures(loaded, saved_models):
  outputs = loaded.run("serving_default", {"examples": _examples(saved_models)}, ["logits"])
  assert list(outputs) == ["logits"]
  table = loaded.run("member_embedding", {"member_id": np.array([b"7", b"unknown"], object)})
  assert table["personalised"].tolist() == [True, False]
  assert table["meta_embedding"].shape == (2, saved_models.embedding_dim)


@pytest.mark.parametrize("signature,inputs,output_filter,message", [
    ("nope", {"examples": np.array([b""], object)}, (), "signature 'nope' not found"),
    ("", {"examples": np.array([1.0], np.float32)}, (),
     "input 'examples' must be DT_STRING, got DT_FLOAT"),
    ("", {}, (), r"missing \['examples'\]"),
    ("", {"examples": np.array([b""], object), "x": np.array([1])}, (), r"unexpected \['x'\]"),
    ("", {"examples": np.array([[b""]], object)}, (), r"must have shape \[None\], got \[1, 1\]"),
    ("", {"examples": np.array([], object)}, (), "empty batch"),
    ("", {"examples": np.array([b"garbage"], object)}, (), "(?i)could not parse"),
    ("", {"examples": np.array([b""], object)}, ("nope",), "output_filter names"),
])
def test_bad_requests_are_invalid_argument(loaded, signature, inputs, output_filter, message):
  with pytest.raises(ServingError, match=message) as error:
    loaded.run(signature, inputs, output_filter)
  assert error.value.code == "INVALID_ARGUMENT"


def test_request_dtype_is_checked_against_the_signature(loaded, saved_models):
  with pytest.raises(ServingError, match="must be DT_STRING, got DT_INT64"):
    loaded.run("", {"examples": _examples(saved_models)}, dtypes={"examples": tf.int64.as_datatype_enum})


def _write_warmup(path, requests):
  directory = os.path.join(path, "assets.extra")
  os.makedirs(directory, exist_ok=True)
  with tf.io.TFRecordWriter(os.path.join(directory, "tf_serving_warmup_requests")) as writer:
    for request in requests:
      writer.write(prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString())


def _predict_request(examples):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "limaml"
  request.inputs["examples"].CopyFrom(tensors.to_tensor_proto(examples))
  return request


def test_warmup_requests_are_replayed(saved_models, tmp_path):
  path = shutil.copytree(saved_models.personalised_v1, str(tmp_path / "1"))
  _write_warmup(path, [_predict_request(_examples(saved_models))] * 3)
  version = versions.LoadedVersion(1, path)
  try:
    assert version.warmup() == 3
  finally:
    version.retire()


def test_failing_warmup_skips_the_version(saved_models, tmp_path):
  base = str(tmp_path / "base")
  add_version(saved_models.personalised_v1, base, 1)
  path = shutil.copytree(saved_models.personalised_v2, str(tmp_path / "v2"))
  _write_warmup(path, [_predict_request(np.array([b"garbage"], object))])
  add_version(path, base, 2)
  model = versions.Model("limaml", base, settle_interval_s=0)
  assert model.poll() == 1
  assert model.states()[0][:2] == (2, "END") and "warmup failed" in model.states()[0][2]
  model.close()


def test_poll_swaps_to_the_latest_and_unloads_after_in_flight_requests(saved_models, tmp_path):
  base = str(tmp_path / "base")
  add_version(saved_models.personalised_v1, base, 1)
  os.makedirs(os.path.join(base, "not_a_version"))
  os.makedirs(os.path.join(base, "7"))  # no saved_model.pb
  model = versions.Model("limaml", base, settle_interval_s=0)
  assert model.poll() == 1
  with model.hold() as old:
    add_version(saved_models.personalised_v2, base, 2)
    assert model.poll() == 2
    # The old version still answers the request holding it.
    assert old.run("", {"examples": _examples(saved_models)})["logits"].shape == (3,)
    assert not old.closed
  assert old.closed
  with model.hold(2) as new:
    assert new.version == 2
  with pytest.raises(ServingError, match="version 1 is not serving") as error:
    with model.hold(1):
      pass
  assert error.value.code == "NOT_FOUND"
  assert [s[:2] for s in model.states()] == [(7, "END"), (2, "AVAILABLE"), (1, "END")]
  model.close()


def test_corrupt_version_is_ignored_and_retried_once_it_changes(saved_models, tmp_path):
  base = str(tmp_path / "base")
  add_version(saved_models.personalised_v1, base, 1)
  model = versions.Model("limaml", base, settle_interval_s=0)
  assert model.poll() == 1
  corrupt = os.path.join(base, "3")
  os.makedirs(corrupt)
  with open(os.path.join(corrupt, "saved_model.pb"), "wb") as f:
    f.write(b"\x00not a saved model")
  assert model.poll() == 1
  assert model.poll() == 1  # same files: not retried (no second warning, no reload)
  assert model.states()[0][:2] == (3, "END") and "load failed" in model.states()[0][2]
  with model.hold() as serving:
    assert serving.run("", {"examples": _examples(saved_models)})["logits"].shape == (3,)
  shutil.rmtree(corrupt)
  add_version(saved_models.personalised_v2, base, 3)
  assert model.poll() == 3
  model.close()


def test_no_loadable_version_is_not_found(tmp_path):
  model = versions.Model("limaml", str(tmp_path), settle_interval_s=0)
  assert model.poll() is None
  with pytest.raises(ServingError, match="no loaded version") as error:
    with model.hold():
      pass
  assert error.value.code == "NOT_FOUND"


def test_models_registry(tmp_path):
  models = versions.Models({"a": str(tmp_path)})
  assert models.names == ["a"]
  with pytest.raises(ServingError, match="model 'b' not found") as error:
    models.get("b")
  assert error.value.code == "NOT_FOUND"
  with pytest.raises(ValueError):
    versions.Models({})


MEMBER_IDS = os.path.join("assets", "member_ids.txt")


def _personalised(model, member_ids=("7", "8")):
  with model.hold() as serving:
    outputs = serving.run("member_embedding", {"member_id": np.array(
        [m.encode() for m in member_ids], object)})
  return outputs["personalised"].tolist()


def _copy_with_partial_member_table(source, base, version):
  """`<base>/<version>` copied in place with only the first member id line written yet."""
  target = shutil.copytree(source, os.path.join(base, str(version)))
  with open(os.path.join(source, MEMBER_IDS), encoding="utf-8") as f:
    lines = f.readlines()
  with open(os.path.join(target, MEMBER_IDS), "w", encoding="utf-8") as f:
    f.write(lines[0])
  return target, lines


def _finish_member_table(target, lines):
  with open(os.path.join(target, MEMBER_IDS), "a", encoding="utf-8") as f:
    f.writelines(lines[1:])


def test_version_copied_in_slowly_loads_only_after_its_files_settle(saved_models, tmp_path):
  base = str(tmp_path / "base")
  add_version(saved_models.personalised_v1, base, 1)
  model = versions.Model("limaml", base, settle_interval_s=1.0)
  try:
    assert model.poll() == 1  # v1's files are old: it loads at once
    target, lines = _copy_with_partial_member_table(saved_models.personalised_v2, base, 2)
    assert model.poll() == 1  # v2 is being written
    time.sleep(0.5)
    assert model.poll() == 1
    _finish_member_table(target, lines)  # the writer was still going
    time.sleep(0.6)
    assert model.poll() == 1  # 0.6 s since the last write: not settled
    time.sleep(0.6)
    assert model.poll() == 2
    assert _personalised(model) == [True, True]
    assert [s[:2] for s in model.states()] == [(2, "AVAILABLE"), (1, "END")]
  finally:
    model.close()


def test_version_whose_files_change_after_loading_is_reloaded(saved_models, tmp_path):
  base = str(tmp_path / "base")
  model = versions.Model("limaml", base, settle_interval_s=0.3)
  try:
    os.makedirs(base)
    target, lines = _copy_with_partial_member_table(saved_models.personalised_v1, base, 1)
    time.sleep(0.4)  # the writer stalled longer than the settle interval
    assert model.poll() == 1
    assert _personalised(model) == [True, False]
    with model.hold() as first:
      pass
    _finish_member_table(target, lines)
    assert model.poll() == 1 and _personalised(model) == [True, False]  # not settled yet
    time.sleep(0.4)
    assert model.poll() == 1
    assert _personalised(model) == [True, True]
    assert first.closed
  finally:
    model.close()


def test_removed_versions_are_unloaded_as_tf_serving_does(saved_models, tmp_path):
  base = str(tmp_path / "base")
  add_version(saved_models.personalised_v1, base, 1)
  add_version(saved_models.personalised_v2, base, 2)
  model = versions.Model("limaml", base, settle_interval_s=0)
  assert model.poll() == 2
  with model.hold() as v2:
    pass
  shutil.rmtree(os.path.join(base, "2"))
  assert model.poll() == 1  # `latest` of what is left
  assert v2.closed
  shutil.rmtree(os.path.join(base, "1"))
  assert model.poll() is None
  assert [s[:2] for s in model.states()] == [(2, "END"), (1, "END")]
  with pytest.raises(ServingError, match=r"Servable not found for request: Latest\(limaml\)"
                     ) as error:
    with model.hold():
      pass
  assert error.value.code == "NOT_FOUND"
  add_version(saved_models.personalised_v1, base, 3)
  assert model.poll() == 3  # and a new version serves again
  model.close()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e38])
@pytest.mark.parametrize("which", ["personalised_v1", "global_model"])
def test_tf1_loader_rejects_non_finite_or_huge_embeddings(saved_models, which, bad):
  version = versions.LoadedVersion(1, getattr(saved_models, which))
  try:
    embedding = np.zeros([3, saved_models.embedding_dim], np.float32)
    good = version.run("predict_with_embedding", {"examples": _examples(saved_models),
                                                  "meta_embedding": embedding})
    assert np.isfinite(good["probabilities"]).all()
    embedding[2, 0] = bad
    with pytest.raises(ServingError, match="meta_embedding") as error:
      version.run("predict_with_embedding", {"examples": _examples(saved_models),
                                             "meta_embedding": embedding})
    assert error.value.code == "INVALID_ARGUMENT"
  finally:
    version.retire()
