"""`benchmarks/training_coverage.py`: the share of training-period interactions that reach the
Trainer, on a small synthetic CSV (the script validates no input of its own)."""

import json
import os
import runpy
import sys

import numpy as np
import pandas as pd
import pytest

from limaml_keras import schema
from limaml_keras import synthetic
from limaml_keras import task_settings

from tests.benchmarks import scripts

_PATH = scripts.path("training_coverage")
coverage = scripts.load("training_coverage")

NUM_MEMBERS = 30


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
  """A raw-schema CSV of synthetic interactions, its features.json beside it.

  Some members have more than a window (40) of interactions, so the former rule's caps drop
  interactions and the windowed rule makes several tasks for one member.
  """
  root = tmp_path_factory.mktemp("coverage")
  data = synthetic.generate(num_members=NUM_MEMBERS, num_items=20, seed=3,
                            median_interactions=30, max_interactions=120)
  path = synthetic.write_csv(data, str(root / "interactions.csv"))
  schema.save_spec(data.spec, str(root / schema.SPEC_FILE_NAME))
  return path


@pytest.fixture(scope="module")
def record(data_csv):
  """`main`'s record of the CSV."""
  return coverage.main(data_csv, os.path.join(os.path.dirname(data_csv), schema.SPEC_FILE_NAME))


def test_counts_are_those_of_the_training_period(record, data_csv):
  assert set(record) == {"data", "training_period_interactions", "members", "before", "after"}
  assert record["data"] == "interactions.csv"
  timestamps = pd.read_csv(data_csv)[schema.TIMESTAMP_COLUMN].to_numpy()
  cutoff = task_settings.cutoff_time(timestamps)
  assert record["training_period_interactions"] == int(np.sum(timestamps < cutoff))
  assert 0 < record["members"] <= NUM_MEMBERS


def test_windowed_tasks_cover_every_interaction_and_the_former_rule_does_not(record):
  total = record["training_period_interactions"]
  before, after = record["before"], record["after"]
  assert set(before) == {"tasks", "interactions", "share"}
  assert set(after) == {"tasks", "interactions", "share", "settings",
                        "library_training_tasks_interactions"}
  # Default settings (task_history 0, min_interactions 1): every interaction is in one task,
  # and TaskGen's per-member DoFn makes the library's tasks.
  assert after["settings"] == task_settings.DEFAULTS.__dict__
  assert after["interactions"] == after["library_training_tasks_interactions"] == total
  assert after["share"] == 1.0
  assert after["tasks"] >= record["members"]  # At least one window per member.
  # The former rule: one task per member with >= 2 interactions, sides capped to 20.
  assert before["tasks"] <= record["members"]
  assert before["interactions"] <= 40 * before["tasks"]
  assert 0 < before["interactions"] < total
  assert before["share"] == round(before["interactions"] / total, 4)
  assert after["tasks"] > before["tasks"]


def test_command_line_finds_the_spec_beside_the_csv(record, data_csv, monkeypatch, capsys):
  monkeypatch.setattr(sys, "argv", [_PATH, data_csv])
  runpy.run_path(_PATH, run_name="__main__")
  assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(record))
