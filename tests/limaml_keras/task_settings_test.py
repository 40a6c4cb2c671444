"""Tests of the task settings and the one cutoff formula."""

import numpy as np
import pytest

from limaml_keras import task_settings


def test_defaults_are_valid_and_windows_fit_the_caps():
  settings = task_settings.TaskSettings()
  assert settings == task_settings.DEFAULTS
  support = task_settings.window_support_size(settings.window, settings.support_fraction)
  assert (support, settings.window - support) == (settings.max_support, settings.max_query)


@pytest.mark.parametrize("changes, message", [
    ({"window": 1}, "window must be a whole number >= 2"),
    ({"max_support": 0}, "max_support must be a whole number >= 1"),
    ({"max_query": 2.5}, "max_query must be a whole number >= 1"),
    ({"min_interactions": 0}, "min_interactions must be a whole number >= 1"),
    ({"support_fraction": 1.0}, r"support_fraction must be in \(0, 1\)"),
    ({"max_support": True}, "max_support must be a whole number >= 1"),
    ({"task_history": -1}, "task_history must be a whole number >= 0"),
])
def test_bad_settings_are_named(changes, message):
  with pytest.raises(ValueError, match=message):
    task_settings.DEFAULTS.replace(**changes)


def test_window_support_size_leaves_a_query():
  assert task_settings.window_support_size(40, 0.5) == 20
  assert task_settings.window_support_size(2, 0.9) == 1


def test_largest_training_support_of_window_and_history_tasks():
  assert task_settings.DEFAULTS.largest_training_support() == 20  # Half of a 40-window.
  assert task_settings.DEFAULTS.replace(window=10, support_fraction=0.3
                                        ).largest_training_support() == 3
  assert task_settings.DEFAULTS.replace(task_history=50).largest_training_support() == 50


def test_time_cutoff_keeps_ties_together():
  assert task_settings.cutoff_time(np.array([1, 2, 3, 3, 3, 4]), 0.5) == 3
  with pytest.raises(ValueError, match="training period would be empty"):
    task_settings.cutoff_time(np.array([5, 5, 5, 5]), 0.5)
  with pytest.raises(ValueError, match="eval_fraction must be in"):
    task_settings.cutoff_time(np.array([1, 2]), 1.0)
  with pytest.raises(ValueError, match="cannot split 1 interaction"):
    task_settings.cutoff_time(np.array([1]), 0.5)


def test_cutoff_leaves_about_the_eval_fraction_after_it():
  timestamps = np.arange(1000)
  cutoff = task_settings.cutoff_time(timestamps)
  assert (timestamps >= cutoff).mean() == pytest.approx(task_settings.EVAL_FRACTION)
