"""A quiet console for pipeline runs: no error-looking line that is not an error.

Two kinds of noise reach stderr from processes that use TensorFlow:

* C++ start-up notices (`E external/local_xla/... Unable to register
  cuFFT/cuDNN/cuBLAS factory`, `oneDNN supports DT_INT32 only on platforms
  with AVX-512`), logged at ERROR level before anything runs. TensorFlow
  reads `TF_CPP_MIN_LOG_LEVEL` once, when it loads, so the level must be in
  the environment before the import: `quiet_environment` sets it (the CLI
  calls it first thing; Beam's worker processes inherit the environment).
* `Exception ignored in: <function AtomicFunction.__del__ ...> TypeError` at
  interpreter shutdown: TensorFlow's function destructor runs after module
  teardown has cleared the globals it needs. Python reports it through
  `sys.unraisablehook`; `install_shutdown_filter` drops exactly that report
  (a `TypeError` raised by `AtomicFunction.__del__`) and passes every other
  one on. Beam's worker processes install it by importing this module as a
  Beam plugin (`BEAM_PLUGIN_ARG`, added by `tfx_pipeline.local_runner`) when
  `QUIET_ENV` is set in the environment they inherit.

`--verbose` runs set neither, and everything is shown.
"""

import os
import sys

#: Set to "1" in the environment of a quiet run (worker processes read it).
QUIET_ENV = "LIMAML_QUIET"
#: TensorFlow's C++ log level: 3 shows FATAL only.
TF_CPP_LOG_LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
QUIET_TF_CPP_LOG_LEVEL = "3"
#: The Beam pipeline argument that makes every worker process import this module.
BEAM_PLUGIN_ARG = f"--beam_plugins={__name__}"
_NOISY_DESTRUCTOR = "AtomicFunction.__del__"


def quiet_environment() -> None:
  """Sets the environment of a quiet run (this process, before TensorFlow loads, and children)."""
  os.environ[TF_CPP_LOG_LEVEL_ENV] = QUIET_TF_CPP_LOG_LEVEL
  os.environ[QUIET_ENV] = "1"


def is_shutdown_noise(unraisable) -> bool:
  """Whether an unraisable-exception report is TensorFlow's destructor `TypeError`."""
  return (isinstance(unraisable.exc_value, TypeError)
          and getattr(unraisable.object, "__qualname__", None) == _NOISY_DESTRUCTOR)


def install_shutdown_filter() -> None:
  """Drops `is_shutdown_noise` reports; every other report goes to the previous hook."""
  previous = sys.unraisablehook
  if getattr(previous, "limaml_filter", False):
    return

  def hook(unraisable):
    if not is_shutdown_noise(unraisable):
      previous(unraisable)

  hook.limaml_filter = True
  sys.unraisablehook = hook


if os.environ.get(QUIET_ENV) == "1":  # Imported as a Beam plugin by a quiet run's worker.
  install_shutdown_filter()
