"""Loads a `benchmarks/<name>.py` script as a module for its test (benchmarks/ is not a package)."""

import importlib.util
import os
import types

DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "benchmarks")


def path(name: str) -> str:
  """The file of the benchmark script `name` (without `.py`)."""
  return os.path.join(DIRECTORY, f"{name}.py")


def load(name: str) -> types.ModuleType:
  """The benchmark script `name`, executed as a fresh module `<name>_benchmark`."""
  spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path(name))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
