"""Tests of the test-wide hooks in `tests/conftest.py`."""
import os

import pytest


def test_tests_are_grouped_by_module_for_xdist(request):
  """Under `--dist loadgroup` xdist appends the group to the node id.

  Without the group a module-scoped fixture is built once per worker.
  """
  if not os.environ.get("PYTEST_XDIST_WORKER"):
    pytest.skip("runs under pytest-xdist workers only (pytest.ini's default `-n 2`)")
  assert request.node.nodeid.endswith("@tests/conftest_test.py"), request.node.nodeid
