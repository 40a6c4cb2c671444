"""`lazy_names`: a package's public names are imported on first use, unknown names are named."""

import subprocess
import sys

import pytest

from limaml_keras import lazy_names


def test_a_name_comes_from_its_module():
  getattr_ = lazy_names.module_getattr("pkg", {"dumps": "json", "OrderedDict": "collections"})
  import collections  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  assert getattr_("dumps") is json.dumps
  assert getattr_("OrderedDict") is collections.OrderedDict


def test_an_unknown_name_is_an_attribute_error_naming_the_package():
  getattr_ = lazy_names.module_getattr("limaml_keras.something", {})
  with pytest.raises(AttributeError,
                     match="module 'limaml_keras.something' has no attribute 'nope'"):
    getattr_("nope")


def test_the_packages_import_their_modules_only_when_a_name_is_used():
  code = ("import sys, limaml_keras, limaml_keras.datasets; "
          "before = {m for m in ('limaml_keras.model', 'limaml_keras.datasets.movielens', "
          "'tensorflow') if m in sys.modules}; "
          "limaml_keras.datasets.MOVIELENS_SPEC; limaml_keras.LiMAMLModel; "
          "print(sorted(before), 'limaml_keras.datasets.movielens' in sys.modules, "
          "'limaml_keras.model' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True).stdout.split()
  assert out == ["[]", "True", "True"]
