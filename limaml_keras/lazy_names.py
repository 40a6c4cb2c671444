"""Public names a package loads on first use (PEP 562 module `__getattr__`).

`limaml_keras` and `limaml_keras.datasets` export their names this way, so
importing the package (the CLI's argument parsing, `python -m` of one of its
modules) imports nothing heavy until a name is used.
"""

import importlib
from typing import Any, Callable, Mapping


def module_getattr(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
  """A package's `__getattr__` that imports `names[name]` when `name` is first used.

  Args:
    package: the package's name, for the error message.
    names: public name -> the module that defines it.

  Returns:
    The function to assign to the package's `__getattr__`; an unknown name
    raises `AttributeError` naming the package.
  """

  def __getattr__(name: str) -> Any:
    if name in names:
      return getattr(importlib.import_module(names[name]), name)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")

  return __getattr__
