"""Packaging: the wheel's contents, and the Keras core without the pipeline stack."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SERVING_CONFIGS = ("serving/models.config", "serving/batching_parameters.txt",
                    "serving/monitoring.config", "serving/docker-compose.yml",
                    "serving/kubernetes/limaml-serving.yaml")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """Builds the wheel offline from a copy of the sources (the checkout stays clean)."""
  source = tmp_path_factory.mktemp("source")
  for name in ("setup.py", "README.md", "limaml", "limaml_keras", "tfx_pipeline", "serving"):
    path = os.path.join(ROOT, name)
    if os.path.isdir(path):
      shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    elif os.path.exists(path):
      shutil.copy(path, source / name)
  out = tmp_path_factory.mktemp("wheel")
  subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--no-index", "--disable-pip-version-check", "-q", "-w", str(out),
                  str(source)], check=True, capture_output=True, timeout=600)
  wheels = [f for f in os.listdir(out) if f.endswith(".whl")]
  assert len(wheels) == 1, wheels
  with zipfile.ZipFile(out / wheels[0]) as archive:
    return {name: archive.read(name) if name.endswith((".txt", "METADATA")) else None
            for name in archive.namelist()}


@pytest.mark.slow
def test_wheel_ships_the_packages_and_the_serving_configs(wheel):
  for package in ("limaml", "limaml_keras", "limaml_keras/evaluation", "limaml_keras/datasets",
                  "tfx_pipeline", "tfx_pipeline/components", "tfx_pipeline/models",
                  "tfx_pipeline/beam", "tfx_pipeline/ops", "tfx_pipeline/pipeline", "serving"):
    assert f"{package}/__init__.py" in wheel, package
  for module in ("limaml/cli.py", "limaml_keras/model.py", "limaml_keras/task_settings.py",
                 "limaml_keras/model_config.py", "limaml_keras/model_factory.py",
                 "tfx_pipeline/components/task_gen.py", "serving/client.py"):
    assert module in wheel, module
  for config in _SERVING_CONFIGS:
    assert config in wheel, config
  assert not any(name.startswith("tests/") for name in wheel)


@pytest.mark.slow
def test_wheel_declares_the_console_script_and_the_extras(wheel):
  entry_points = next(v for k, v in wheel.items() if k.endswith("entry_points.txt")).decode()
  assert "[console_scripts]" in entry_points and "limaml = limaml.cli:main" in entry_points
  metadata = next(v for k, v in wheel.items() if k.endswith("/METADATA")).decode()
  requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
  core = [r for r in requires if "extra ==" not in r]
  assert sorted(r.split()[1] for r in core) == sorted(
      ["tensorflow", "tf-keras", "tensorflow-recommenders", "numpy", "pandas"])
  assert any("tfx" in r and 'extra == "pipeline"' in r for r in requires)
  assert any("apache-beam" in r and 'extra == "pipeline"' in r for r in requires)
  assert any("grpcio" in r and 'extra == "serving"' in r for r in requires)
  assert not any(("tfx" in r or "apache-beam" in r) and "extra ==" not in r for r in requires)


_CORE_ONLY = r"""
import importlib.abc, sys

BLOCKED = ("tfx", "apache_beam", "tensorflow_transform", "tensorflow_model_analysis",
           "tensorflow_serving", "tfx_bsl", "tfx_pipeline", "serving", "matplotlib")

class Block(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in BLOCKED:
      raise ImportError(f"{name} is not installed (blocked by the test)")
    return None

sys.meta_path.insert(0, Block())

import numpy as np
import tensorflow as tf
from limaml_keras import LiMAMLModel, MetaBlock, GlobalBlock
from limaml_keras import testing

batch = {k: tf.constant(v) for k, v in testing.random_task_batch(num_tasks=4).items()}
model = LiMAMLModel(MetaBlock(hidden_units=[8], embedding_dim=4),
                    GlobalBlock(num_items=10, item_embedding_dim=4, hidden_units=[8]),
                    inner_steps=1)
model.compile(optimizer=tf.keras.optimizers.Adam(1e-2))
before = [w.numpy().copy() for w in model.trainable_weights] if model.built else None
history = model.fit(tf.data.Dataset.from_tensors(batch), epochs=1, verbose=0)
loss = history.history["loss"][0]
assert np.isfinite(loss), loss
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not loaded, loaded
print("trained", loss)
"""


@pytest.mark.slow  # A fresh TensorFlow process.
def test_core_library_trains_without_the_pipeline_stack():
  env = dict(os.environ, PYTHONPATH=ROOT)
  result = subprocess.run([sys.executable, "-c", _CORE_ONLY], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith("trained")
