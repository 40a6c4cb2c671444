"""Tests of limaml_keras.warmup: records TF Serving replays, run through TF Serving's loader path."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from limaml_keras import serving_requests as requests_lib
from limaml_keras import warmup
from tfx_pipeline.ops import push
from tfx_pipeline import testing

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow


@pytest.fixture
def version_dir(saved_models, tmp_path):
  return shutil.copytree(saved_models.personalised_v1, str(tmp_path / "model"))


def _rows():
  return [dict(zip(testing.RAW_FEATURE_SPEC, row)) for row in testing.ROWS]


def test_written_requests_parse_back_and_run(tiny_catalog, version_dir):
  requests = warmup.build_warmup_requests(tiny_catalog, num_members=5, num_candidates=100)
  path = warmup.write_warmup_requests(version_dir, requests, model_name="limaml")
  assert path == os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
  back = warmup.read_warmup_requests(version_dir)
  assert [r.SerializeToString() for r in back] == [r.SerializeToString() for r in requests]
  outputs = warmup.replay_warmup_requests(version_dir)
  # Both members of the tiny data (most active first) and one unknown member; every
  # request ranks all (2 < 100) items.
  assert [o["personalised"].tolist() for o in outputs] == [[True, True], [True, True],
                                                           [False, False]]
  for request, out in zip(back, outputs):
    assert len(requests_lib.request_examples(request)) == 2
    assert np.all((out["probabilities"] > 0) & (out["probabilities"] < 1))


def test_warmup_travels_with_the_pushed_version(tiny_catalog, version_dir, tmp_path):
  warmup.write_warmup_requests(version_dir, warmup.build_warmup_requests(tiny_catalog))
  pushed = push.push_version(version_dir, str(tmp_path / "serving_model"), version=7)
  assert len(warmup.read_warmup_requests(pushed)) == 3


def test_limits_and_bad_inputs(tiny_catalog, version_dir, tmp_path):
  request = warmup.build_warmup_requests(tiny_catalog, num_members=0)[0]
  with pytest.raises(ValueError, match="at most 1000"):
    warmup.write_warmup_requests(version_dir, [request] * 1001)
  with pytest.raises(ValueError, match="no warmup requests"):
    warmup.write_warmup_requests(version_dir, [])
  with pytest.raises(ValueError, match="request 1 is a str"):
    warmup.write_warmup_requests(version_dir, [request, "x"])
  with pytest.raises(FileNotFoundError, match="no SavedModel"):
    warmup.write_warmup_requests(str(tmp_path), [request])
  with pytest.raises(FileNotFoundError, match="no warmup file"):
    warmup.read_warmup_requests(str(tmp_path))
  with pytest.raises(ValueError, match="num_candidates"):
    warmup.build_warmup_requests(tiny_catalog, num_candidates=0)
  assert len(warmup.write_warmup_requests(version_dir, [request] * 1000)) > 0
  assert len(warmup.read_warmup_requests(version_dir)) == 1000


def test_written_from_rows_and_replayed(saved_models, version_dir):
  path = warmup.write_warmup_from_rows(version_dir, iter(_rows()), testing.SPEC,
                                       saved_models.feature_spec)
  back = warmup.read_warmup_requests(version_dir)
  assert path == warmup.warmup_path(version_dir)
  assert {r.model_spec.name for r in back} == {"limaml"}
  outputs = warmup.replay_warmup_requests(version_dir)
  assert [o["personalised"].tolist() for o in outputs] == [[True, True], [True, True],
                                                           [False, False]]
  # Only the first row is read: one known member (7, with its one item x) + a cold one.
  warmup.write_warmup_from_rows(version_dir, _rows(), testing.SPEC, saved_models.feature_spec,
                                model_name="other", max_rows=1)
  back = warmup.read_warmup_requests(version_dir)
  assert [len(requests_lib.request_examples(r)) for r in back] == [1, 1]
  assert [o["personalised"].tolist() for o in warmup.replay_warmup_requests(version_dir)] == [
      [True], [False]]


def test_rows_and_replay_errors(saved_models, version_dir, tiny_catalog):
  with pytest.raises(ValueError, match="max_rows must be >= 1"):
    warmup.write_warmup_from_rows(version_dir, _rows(), testing.SPEC, saved_models.feature_spec,
                                  max_rows=0)
  with pytest.raises(ValueError, match="new.csv: no interactions"):
    warmup.write_warmup_from_rows(version_dir, [], testing.SPEC, saved_models.feature_spec,
                                  source="new.csv")
  with pytest.raises(ValueError, match=r"lacks columns \['age'\]"):
    warmup.write_warmup_from_rows(version_dir, [{k: v for k, v in row.items() if k != "age"}
                                                for row in _rows()],
                                  testing.SPEC, saved_models.feature_spec)
  request = warmup.build_warmup_requests(tiny_catalog, num_members=0)[0]
  other_signature = requests_lib.predict_request(requests_lib.request_examples(request),
                                                 signature_name="nope")
  with pytest.raises(ValueError, match="request 1 asks for signature 'nope'"):
    warmup.replay_warmup_requests(version_dir, [request, other_signature])
  bad_input = predict_pb2.PredictRequest.FromString(request.SerializeToString())
  bad_input.inputs["colour"].CopyFrom(tf.make_tensor_proto(["red"]))
  with pytest.raises(ValueError, match=r"request 0 has inputs \['colour'\]"):
    warmup.replay_warmup_requests(version_dir, [bad_input])
  garbage = requests_lib.predict_request([b"not a tf.Example"])
  with pytest.raises(ValueError, match="request 0 fails: .*"):
    warmup.replay_warmup_requests(version_dir, [garbage])
  # Records the model cannot parse (age typed as text) are replayed, refused and removed.
  wrong_types = {**saved_models.feature_spec, "age": tf.io.FixedLenFeature([1], tf.string)}
  with pytest.raises(ValueError, match="request 0 fails"):
    warmup.write_warmup_from_rows(version_dir, _rows(), testing.SPEC, wrong_types)
  assert not os.path.exists(warmup.warmup_path(version_dir))
