"""Tests of the quiet-console hooks, in fresh Python processes (as Beam workers are)."""

import os
import subprocess
import sys
import types

from tfx_pipeline.pipeline import quiet_workers

# A process whose object's destructor fails at shutdown the way TensorFlow's
# AtomicFunction.__del__ does, after importing the module as a Beam plugin would.
_NOISY_PROCESS = """
import importlib
importlib.import_module("tfx_pipeline.pipeline.quiet_workers")

class AtomicFunction:
  def __del__(self):
    raise TypeError("'NoneType' object is not callable")

class Other:
  def __del__(self):
    raise TypeError("a real bug")

kept = [AtomicFunction(), Other()]
del kept
"""


def _run(quiet):
  env = dict(os.environ)
  env.pop(quiet_workers.QUIET_ENV, None)
  if quiet:
    env[quiet_workers.QUIET_ENV] = "1"
  return subprocess.run([sys.executable, "-c", _NOISY_PROCESS], env=env, capture_output=True,
                        text=True, check=True).stderr


def test_a_quiet_worker_drops_only_the_tensorflow_destructor_noise():
  loud = _run(quiet=False)
  assert "AtomicFunction.__del__" in loud and "Other.__del__" in loud
  quiet = _run(quiet=True)
  assert "AtomicFunction" not in quiet
  assert "Exception ignored in: <function Other.__del__" in quiet and "a real bug" in quiet


def test_shutdown_noise_is_a_type_error_from_atomic_function_del():
  def noisy():
    pass
  noisy.__qualname__ = "AtomicFunction.__del__"
  report = types.SimpleNamespace
  assert quiet_workers.is_shutdown_noise(report(exc_value=TypeError("x"), object=noisy))
  assert not quiet_workers.is_shutdown_noise(report(exc_value=RuntimeError("x"), object=noisy))
  assert not quiet_workers.is_shutdown_noise(report(exc_value=TypeError("x"), object=len))


def test_quiet_environment_reaches_children(monkeypatch):
  monkeypatch.delenv(quiet_workers.QUIET_ENV, raising=False)
  monkeypatch.setenv(quiet_workers.TF_CPP_LOG_LEVEL_ENV, "0")
  quiet_workers.quiet_environment()
  assert os.environ[quiet_workers.TF_CPP_LOG_LEVEL_ENV] == "3"
  assert os.environ[quiet_workers.QUIET_ENV] == "1"
  assert quiet_workers.BEAM_PLUGIN_ARG == "--beam_plugins=tfx_pipeline.pipeline.quiet_workers"
