"""Atomic pushes of SavedModel versions into a TF Serving `model_base_path`.

TF Serving polls `<model_base_path>/` and loads every all-digit directory as a
version; it must never see a version half written. `push_version` therefore
copies the SavedModel into a hidden temporary sibling
`<model_base_path>/.tmp-<version>-<random>` (TF Serving ignores names that are
not numbers) and renames it to `<model_base_path>/<version>` only once the copy
is complete; a rename within one filesystem is atomic. On any failure the
temporary directory is removed, so nothing partial stays behind.

All file operations go through `tf.io.gfile`, so URIs whose filesystem
supports renaming directories work too (local, HDFS; on object stores such as
GCS a "rename" is a copy and is not atomic).

Example:

```python
path = push_version("/pipeline/Format-Serving", "/serving/limaml")  # ".../limaml/1700000000"
latest_version("/serving/limaml")                                   # 1700000000
```
"""

import os
import time
import uuid
from typing import Callable, List, Optional

import tensorflow as tf

SAVED_MODEL_FILE = "saved_model.pb"
TEMP_PREFIX = ".tmp-"

#: `copy(src_file, dst_file)`; replaceable in `push_version` (tests inject failures).
CopyFn = Callable[[str, str], None]


def _gfile_copy(source: str, destination: str) -> None:
  tf.io.gfile.copy(source, destination, overwrite=False)


def list_versions(model_base_path: str) -> List[int]:
  """The servable versions under `model_base_path`, ascending.

  A version is an all-digit directory name holding a `saved_model.pb`;
  temporary (`.tmp-*`), hidden or other entries are ignored. A missing base
  path has no versions.
  """
  if not tf.io.gfile.isdir(model_base_path):
    return []
  versions = []
  for name in tf.io.gfile.listdir(model_base_path):
    name = name.rstrip("/")
    if name.isdigit() and tf.io.gfile.exists(
        os.path.join(model_base_path, name, SAVED_MODEL_FILE)):
      versions.append(int(name))
  return sorted(versions)


def latest_version(model_base_path: str) -> Optional[int]:
  """The highest servable version under `model_base_path`, or None when there is none."""
  versions = list_versions(model_base_path)
  return versions[-1] if versions else None


def version_path(model_base_path: str, version: int) -> str:
  """`<model_base_path>/<version>`."""
  return os.path.join(model_base_path, str(int(version)))


def _copy_tree(source: str, destination: str, copy: CopyFn) -> None:
  tf.io.gfile.makedirs(destination)
  for directory, subdirectories, files in tf.io.gfile.walk(source):
    relative = os.path.relpath(directory, source)
    target = destination if relative == "." else os.path.join(destination, relative)
    for name in subdirectories:
      tf.io.gfile.makedirs(os.path.join(target, name.rstrip("/")))
    for name in files:
      copy(os.path.join(directory, name), os.path.join(target, name))


def _default_version(model_base_path: str) -> int:
  latest = latest_version(model_base_path)
  now = int(time.time())
  return now if latest is None else max(now, latest + 1)


def push_version(saved_model_dir: str, model_base_path: str, version: Optional[int] = None,
                 copy: CopyFn = _gfile_copy) -> str:
  """Copies a SavedModel into `<model_base_path>/<version>` atomically.

  Args:
    saved_model_dir: the SavedModel directory to push (holds `saved_model.pb`).
    model_base_path: the directory TF Serving's `model_base_path` points at;
      created when missing.
    version: the version number (>= 0); default `max(int(time.time()),
      latest + 1)`, so a new push is always the newest version.
    copy: copies one file (`tf.io.gfile.copy` by default).

  Returns:
    The final version directory, `<model_base_path>/<version>`.

  Raises:
    ValueError: `saved_model_dir` holds no SavedModel, `version` is negative,
      or the version directory exists already.
  """
  if not tf.io.gfile.exists(os.path.join(saved_model_dir, SAVED_MODEL_FILE)):
    raise ValueError(f"cannot push {saved_model_dir!r}: not a SavedModel directory "
                     f"(no {SAVED_MODEL_FILE})")
  if version is None:
    version = _default_version(model_base_path)
  elif isinstance(version, bool) or int(version) != version or version < 0:
    raise ValueError(f"version must be a whole number >= 0, got {version!r}")
  final = version_path(model_base_path, version)
  if tf.io.gfile.exists(final):
    raise ValueError(f"version {version} exists already at {final!r}; versions are immutable, "
                     "push a new one")
  tf.io.gfile.makedirs(model_base_path)
  temporary = os.path.join(model_base_path, f"{TEMP_PREFIX}{version}-{uuid.uuid4().hex}")
  try:
    _copy_tree(saved_model_dir, temporary, copy)
    tf.io.gfile.rename(temporary, final, overwrite=False)
  except BaseException:
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.rmtree(temporary)
    raise
  return final
