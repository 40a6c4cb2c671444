"""Test-wide settings: quiet TensorFlow, legacy Keras, seeded and single-process."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# Session fixtures of real servable SavedModels, used by the serving, CLI and
# request-contract tests in several folders.
pytest_plugins = ["tests.serving_fixtures"]

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

#: Session fixtures that run a TFT Transform and export real SavedModels (a
#: minute on 2 cores): a test that uses one belongs to the `slow` tier.
SLOW_FIXTURES = frozenset({"saved_models", "server", "grpc_channel", "rest_url", "tiny_catalog"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
  """Marks `slow` every test that uses one of `SLOW_FIXTURES`; groups tests for xdist.

  With `--dist loadgroup` (pytest.ini) the tests that use those session
  fixtures run in one worker, which builds them once, and every other test
  runs in the worker of its module, which builds the module's fixtures once.
  `tryfirst`: xdist reads the `xdist_group` marks in its own hook of the same
  name, so they must be set before it runs (without it no test is grouped and
  module fixtures are built once per worker).

  Groups that hold a `slow` test are moved ahead of the others (a stable sort:
  the order inside a group is kept), so the long units start first and the
  short ones fill the workers' gaps at the end instead of one long module
  running alone.
  """
  groups = {}
  for item in items:
    uses_saved_models = bool(SLOW_FIXTURES & set(getattr(item, "fixturenames", ())))
    if uses_saved_models:
      item.add_marker(pytest.mark.slow)
    groups[item] = "saved_models" if uses_saved_models else item.nodeid.split("::")[0]
    item.add_marker(pytest.mark.xdist_group(groups[item]))
  slow_groups = {groups[item] for item in items if item.get_closest_marker("slow")}
  items.sort(key=lambda item: groups[item] not in slow_groups)
