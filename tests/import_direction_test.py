"""Imports point down: limaml (CLI) -> tfx_pipeline / serving -> limaml_keras.

`limaml_keras` imports neither `tfx_pipeline`, `serving` nor `limaml`;
`serving` and `tfx_pipeline` import only `limaml_keras` of the others; the
CLI package may import anything. Checked statically on every module (any
import statement, at any depth) and at run time for the entry points users
import without the rest of the stack.
"""

import ast
import os
import subprocess
import sys

import pytest

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("limaml", "limaml_keras", "tfx_pipeline", "serving")
#: Package -> the first-party packages it may import (besides itself).
ALLOWED = {
    "limaml_keras": set(),
    "serving": {"limaml_keras"},
    "tfx_pipeline": {"limaml_keras"},
    "limaml": {"limaml_keras", "tfx_pipeline", "serving"},
}


def _modules(package):
  for root, _, files in os.walk(os.path.join(REPO, package)):
    for name in files:
      if name.endswith(".py"):
        yield os.path.join(root, name)


def _imported_packages(path):
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
      names = [node.module]
    else:
      continue
    for name in names:
      top = name.split(".")[0]
      if top in PACKAGES:
        yield node.lineno, top


def test_every_package_has_modules():
  for package in PACKAGES:
    assert list(_modules(package)), package


@pytest.mark.parametrize("package", PACKAGES)
def test_no_upward_imports(package):
  bad = []
  for path in _modules(package):
    for line, imported in _imported_packages(path):
      if imported != package and imported not in ALLOWED[package]:
        bad.append(f"{os.path.relpath(path, REPO)}:{line} imports {imported}")
  assert not bad, "upward imports:\n" + "\n".join(bad)


def _loaded_after(statement):
  code = f"import sys; {statement}; print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  return set(out.stdout.split())


def test_serving_client_does_not_import_the_pipeline_stack():
  loaded = _loaded_after("import serving.client")
  assert not loaded & {"tensorflow_transform", "tfx", "apache_beam", "tfx_pipeline"}


def test_keras_core_does_not_import_the_pipeline_stack():
  loaded = _loaded_after("from limaml_keras import LiMAMLModel, build_tasks")
  assert not loaded & {"tensorflow_transform", "tfx", "apache_beam", "tfx_pipeline", "serving"}


def test_cli_help_imports_no_tensorflow():
  loaded = _loaded_after("import limaml.cli; limaml.cli.build_parser()")
  assert not loaded & {"tensorflow", "tfx", "apache_beam"}
