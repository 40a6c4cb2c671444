"""Atomic version pushes: layout, version numbering, refusals and interrupted copies."""

import os
import time

import pytest
import tensorflow as tf

from tfx_pipeline.ops import push


def _saved_model(directory, payload=b"model"):
  """A directory shaped like a SavedModel (the push copies bytes, it never loads them)."""
  os.makedirs(os.path.join(directory, "variables"))
  os.makedirs(os.path.join(directory, "assets"))
  with open(os.path.join(directory, push.SAVED_MODEL_FILE), "wb") as f:
    f.write(payload)
  for name in ("variables/variables.index", "variables/variables.data-00000-of-00001",
               "assets/member_ids.txt"):
    with open(os.path.join(directory, name), "wb") as f:
      f.write(payload + name.encode())
  return str(directory)


def _tree(directory):
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def test_push_copies_the_whole_tree_into_the_version_directory(tmp_path):
  source = _saved_model(tmp_path / "model")
  base = str(tmp_path / "serving")

  path = push.push_version(source, base, version=3)

  assert path == os.path.join(base, "3")
  assert _tree(path) == _tree(source)
  assert sorted(os.listdir(base)) == ["3"]  # No temporary directory left behind.
  assert push.list_versions(base) == [3]
  assert push.latest_version(base) == 3


def test_default_version_is_now_or_after_the_latest(tmp_path):
  source = _saved_model(tmp_path / "model")
  base = str(tmp_path / "serving")
  before = int(time.time())

  first = int(os.path.basename(push.push_version(source, base)))
  assert before <= first <= int(time.time())

  future = first + 1000
  push.push_version(source, base, version=future)
  after_future = int(os.path.basename(push.push_version(source, base)))
  assert after_future == future + 1
  assert push.list_versions(base) == [first, future, future + 1]


def test_refuses_an_existing_version_and_leaves_it_untouched(tmp_path):
  base = str(tmp_path / "serving")
  push.push_version(_saved_model(tmp_path / "a", b"old"), base, version=5)

  with pytest.raises(ValueError, match="version 5 exists already"):
    push.push_version(_saved_model(tmp_path / "b", b"new"), base, version=5)
  with open(os.path.join(base, "5", push.SAVED_MODEL_FILE), "rb") as f:
    assert f.read() == b"old"


@pytest.mark.parametrize("version", [-1, 1.5, True])
def test_refuses_bad_versions(tmp_path, version):
  with pytest.raises(ValueError, match="version must be a whole number"):
    push.push_version(_saved_model(tmp_path / "m"), str(tmp_path / "serving"), version=version)


def test_refuses_a_directory_without_a_saved_model(tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="not a SavedModel directory"):
    push.push_version(str(tmp_path / "empty"), str(tmp_path / "serving"))
  assert not (tmp_path / "serving").exists()


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_an_interrupted_copy_leaves_no_version_and_no_temporary(tmp_path, error):
  source = _saved_model(tmp_path / "model")
  base = str(tmp_path / "serving")
  push.push_version(source, base, version=1)
  copied = []

  def copy_then_fail(src, dst):
    if len(copied) == 2:  # Midway: some files are written, others are not.
      raise error
    tf.io.gfile.copy(src, dst)
    copied.append(dst)

  with pytest.raises(type(error)):
    push.push_version(source, base, version=2, copy=copy_then_fail)

  assert len(copied) == 2
  assert all(".tmp-2-" in path for path in copied)  # Written only in the temporary directory.
  assert sorted(os.listdir(base)) == ["1"]
  assert push.list_versions(base) == [1]
  # A retry of the same version succeeds.
  assert _tree(push.push_version(source, base, version=2)) == _tree(source)


def test_list_versions_ignores_temporary_hidden_and_incomplete_directories(tmp_path):
  base = tmp_path / "serving"
  _saved_model(base / "10")
  _saved_model(base / ".tmp-11-abc")
  _saved_model(base / ".12")
  _saved_model(base / "v13")
  (base / "14").mkdir()  # No saved_model.pb: not servable.
  (base / "15").write_text("a file, not a directory")

  assert push.list_versions(str(base)) == [10]
  assert push.latest_version(str(base)) == 10
  assert push.list_versions(str(tmp_path / "missing")) == []
  assert push.latest_version(str(tmp_path / "missing")) is None
