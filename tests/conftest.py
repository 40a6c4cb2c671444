"""Test-wide settings: quiet TensorFlow, legacy Keras, seeded and single-process."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# Session fixtures of real servable SavedModels, used by the serving, CLI and
# request-contract tests in several folders.
pytest_plugins = ["tests.serving_fixtures"]
