"""Tests of the AtomicPusher executor: blessing gate, recorded push, no half-written version."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import tensorflow as tf
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from tfx_pipeline.components import atomic_pusher
from tfx_pipeline.ops import push

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow


def _saved_model(path):
  module = tf.Module()
  module.weights = tf.Variable(tf.range(1000, dtype=tf.float32))
  module.serve = tf.function(lambda x: {"y": x * 2.0},
                             input_signature=[tf.TensorSpec([None], tf.float32)])
  tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
  return path


@pytest.fixture(scope="module")
def model_uri(tmp_path_factory):
  """A Model artifact directory as the Trainer writes it (SavedModel in Format-Serving/)."""
  uri = tmp_path_factory.mktemp("model")
  _saved_model(str(uri / "Format-Serving"))
  return str(uri)


def _artifacts(model_uri, tmp_path, blessed):
  model = standard_artifacts.Model()
  model.uri = model_uri
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / "blessing")
  blessing.set_int_custom_property("blessed", int(blessed))  # What the Evaluator sets.
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / "pushed_model")
  return model, blessing, pushed


def _exec_properties(base, versioning=pusher_pb2.Versioning.AUTO):
  destination = pusher_pb2.PushDestination(filesystem=pusher_pb2.PushDestination.Filesystem(
      base_directory=base, versioning=versioning))
  return {"push_destination": proto_utils.proto_to_json(destination)}


def _push(model_uri, tmp_path, blessed, base):
  model, blessing, pushed = _artifacts(model_uri, tmp_path, blessed)
  atomic_pusher.Executor().Do({"model": [model], "model_blessing": [blessing]},
                              {"pushed_model": [pushed]}, _exec_properties(base))
  return pushed


def test_blessed_model_is_pushed_and_recorded(model_uri, tmp_path):
  base = str(tmp_path / "serving")
  pushed = _push(model_uri, tmp_path, True, base)
  [version] = push.list_versions(base)
  assert os.listdir(base) == [str(version)]  # No temporary directory left.
  assert pushed.get_int_custom_property("pushed") == 1
  assert pushed.get_string_custom_property("pushed_version") == str(version)
  assert pushed.get_string_custom_property("pushed_destination") == os.path.join(base,
                                                                                 str(version))
  loaded = tf.saved_model.load(os.path.join(base, str(version)))
  assert loaded.signatures["serving_default"](tf.constant([1.5]))["y"].numpy().tolist() == [3.0]
  assert os.path.exists(os.path.join(pushed.uri, "saved_model.pb"))  # The archived copy.
  second = _push(model_uri, tmp_path / "again", True, base)
  assert int(second.get_string_custom_property("pushed_version")) > version
  assert len(push.list_versions(base)) == 2


def test_not_blessed_model_is_not_pushed(model_uri, tmp_path):
  base = str(tmp_path / "serving")
  pushed = _push(model_uri, tmp_path, False, base)
  assert pushed.get_int_custom_property("pushed") == 0
  assert not pushed.has_custom_property("pushed_destination")
  assert not os.path.exists(base)


def test_failure_mid_copy_leaves_nothing(model_uri, tmp_path, monkeypatch):
  base = str(tmp_path / "serving")
  real_copy, copied = tf.io.gfile.copy, []

  def copy_then_fail(source, destination, overwrite=False):
    if len(copied) == 2:
      raise KeyboardInterrupt("interrupted mid-copy")
    real_copy(source, destination, overwrite)
    copied.append(destination)

  monkeypatch.setattr(tf.io.gfile, "copy", copy_then_fail)
  with pytest.raises(KeyboardInterrupt):
    _push(model_uri, tmp_path, True, base)
  assert len(copied) == 2
  assert os.listdir(base) == []


_KILLED_PUSH = textwrap.dedent("""
    import sys, time
    import tensorflow as tf
    sys.path.insert(0, {repo!r})
    from tests.tfx_pipeline.components import atomic_pusher_test as t
    real_copy = tf.io.gfile.copy
    def slow_copy(source, destination, overwrite=False):
      real_copy(source, destination, overwrite)
      open({marker!r}, "a").close()  # One file is in; now stall until killed.
      time.sleep(600)
    tf.io.gfile.copy = slow_copy
    import pathlib
    t._push({model_uri!r}, pathlib.Path({tmp!r}), True, {base!r})
""")


def test_killed_push_never_exposes_a_version(model_uri, tmp_path):
  """A push process killed (SIGKILL, no cleanup) mid-copy leaves no servable version."""
  base, marker = str(tmp_path / "serving"), str(tmp_path / "one-file-copied")
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
  script = _KILLED_PUSH.format(repo=repo, marker=marker, model_uri=model_uri,
                               tmp=str(tmp_path), base=base)
  process = subprocess.Popen([sys.executable, "-c", script], cwd=repo)
  try:
    deadline = time.time() + 240
    while not os.path.exists(marker):
      assert process.poll() is None, f"the push process exited early ({process.returncode})"
      assert time.time() < deadline, "the push never started copying"
      time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)
  finally:
    process.kill()
    process.wait()
  entries = os.listdir(base)
  assert push.list_versions(base) == []
  assert not any(name.isdigit() for name in entries)  # Nothing TF Serving would try to load.
  assert [name.startswith(push.TEMP_PREFIX) for name in entries] == [True]


def test_other_destinations_are_refused(model_uri, tmp_path):
  model, blessing, pushed = _artifacts(model_uri, tmp_path, True)
  properties = {"push_destination": "{}"}
  with pytest.raises(ValueError, match="filesystem destination only"):
    atomic_pusher.Executor().Do({"model": [model], "model_blessing": [blessing]},
                                {"pushed_model": [pushed]}, properties)
