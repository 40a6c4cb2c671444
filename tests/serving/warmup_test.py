"""Tests of serving.warmup: records TF Serving replays, run through TF Serving's loader path."""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from serving import requests as requests_lib
from serving import warmup
from tfx_pipeline import push


@pytest.fixture
def version_dir(saved_models, tmp_path):
  return shutil.copytree(saved_models.personalised_v1, str(tmp_path / "model"))


def _run_all(path, requests):
  """Runs each request's signature as TF Serving does: TF1 loader + session.run."""
  outputs = []
  with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    for request in requests:
      signature = meta_graph.signature_def[request.model_spec.signature_name]
      feed = {signature.inputs[k].name: tf.make_ndarray(v) for k, v in request.inputs.items()}
      outputs.append(session.run({k: v.name for k, v in signature.outputs.items()}, feed))
  return outputs


def test_written_requests_parse_back_and_run(tiny_catalog, version_dir):
  requests = warmup.build_warmup_requests(tiny_catalog, num_members=5, num_candidates=100)
  path = warmup.write_warmup_requests(version_dir, requests, model_name="limaml")
  assert path == os.path.join(version_dir, "assets.extra", "tf_serving_warmup_requests")
  back = warmup.read_warmup_requests(version_dir)
  assert [r.SerializeToString() for r in back] == [r.SerializeToString() for r in requests]
  outputs = _run_all(version_dir, back)
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
