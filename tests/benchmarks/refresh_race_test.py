"""`benchmarks/refresh_race.py`: concurrent `limaml embeddings refresh` runs lose no update."""

import json
import sys

import pytest

from tests.benchmarks import scripts

_PATH = scripts.path("refresh_race")
race = scripts.load("refresh_race")


@pytest.mark.slow  # exports SavedModels and runs two CLI processes
def test_two_concurrent_refreshes_both_land(monkeypatch, capsys):
  monkeypatch.setattr(sys, "argv", [_PATH, "--refreshes", "2", "--timeout", "300"])
  race.main()
  record = json.loads(capsys.readouterr().out)
  assert record["failed"] == 0, record.get("failures")
  assert set(record) == {"refreshes", "failed", "updates_lost", "versions_pushed", "wall_s"}
  assert record["refreshes"] == 2
  assert record["updates_lost"] == 0
  assert record["versions_pushed"] == 2  # One new version per refresh, none overwritten.
  assert record["wall_s"] > 0


def test_more_refreshes_than_members_is_named():
  with pytest.raises(ValueError, match="at most 2 refreshes"):
    race.scenario(refreshes=3)
