"""Tests of the quiet-console hooks, in fresh Python processes (as Beam workers are)."""

import os
import subprocess
import sys
import types

import pytest

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


# A real Beam pipeline on multi-processing DirectRunner workers that run TensorFlow.
_BEAM_TF_WORKERS = """
import sys
import apache_beam as beam

class Square(beam.DoFn):
  def setup(self):
    import tensorflow as tf
    self._fn = tf.function(lambda x: x * x)

  def process(self, x):
    yield float(self._fn(float(x)))

args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"] + sys.argv[1:]
with beam.Pipeline(argv=args) as p:
  _ = (p | beam.Create(range(8)) | beam.ParDo(Square()) | beam.CombineGlobally(sum)
       | beam.Map(print))
"""
_NOISE = ("Traceback", "E external", "Exception ignored")


def _beam_workers(quiet):
  env = {k: v for k, v in os.environ.items()
         if k not in (quiet_workers.QUIET_ENV, quiet_workers.TF_CPP_LOG_LEVEL_ENV)}
  args = []
  if quiet:  # What `limaml pipeline run` does: `quiet_environment` and the Beam plugin.
    env.update({quiet_workers.QUIET_ENV: "1",
                quiet_workers.TF_CPP_LOG_LEVEL_ENV: quiet_workers.QUIET_TF_CPP_LOG_LEVEL})
    args = [quiet_workers.BEAM_PLUGIN_ARG]
  result = subprocess.run([sys.executable, "-c", _BEAM_TF_WORKERS, *args], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
  assert result.stdout.split() == ["140.0"]  # 0² + ... + 7², computed by the workers.
  return [line for line in result.stderr.splitlines() if any(n in line for n in _NOISE)]


@pytest.mark.slow
def test_multi_processing_workers_running_tensorflow_are_quiet():
  """Beam worker processes (`--direct_running_mode=multi_processing`), as large local runs use."""
  assert _beam_workers(quiet=False)  # The workers' stderr reaches the console...
  assert _beam_workers(quiet=True) == []  # ...and a quiet run's has no error-looking line.
