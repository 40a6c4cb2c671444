"""Public data sets converted to the raw interaction schema.

The names below load lazily (PEP 562, as in `limaml_keras`), so
`python -m limaml_keras.datasets.movielens` runs the module once, as
`__main__`, without runpy's "found in sys.modules" warning.
"""
from limaml_keras import lazy_names

#: Public name -> the module that defines it (all from the MovieLens reader).
_LAZY = dict.fromkeys(("convert_to_csv", "load_movielens", "MOVIELENS_SPEC", "MovieLensData",
                       "MovieLensFormatError"), "limaml_keras.datasets.movielens")

__all__ = sorted(_LAZY)
__getattr__ = lazy_names.module_getattr(__name__, _LAZY)
