"""`benchmarks/embedding_job.py`: the Beam job against in-process `adapt`, on a few members."""

import json
import os
import sys

import pytest

from tests.benchmarks import scripts

_PATH = scripts.path("embedding_job")
job_benchmark = scripts.load("embedding_job")


def _main(monkeypatch, *argv):
  monkeypatch.setattr(sys, "argv", [_PATH, *argv])
  job_benchmark.main()


@pytest.mark.slow  # exports a SavedModel and runs the Beam job
def test_both_sides_report_their_throughput(monkeypatch, capsys):
  _main(monkeypatch, "--members", "12", "--batch-size", "4", "--repeats", "1")
  record = json.loads(capsys.readouterr().out)
  assert set(record) == {"members", "batch_size", "repeats", "beam_members_per_s",
                         "inprocess_members_per_s", "beam_vs_inprocess"}
  assert (record["members"], record["batch_size"], record["repeats"]) == (12, 4, 1)
  assert record["beam_members_per_s"] > 0 and record["inprocess_members_per_s"] > 0
  # The ratio of the unrounded rates (each printed to 0.1), itself rounded to 0.001.
  beam, inprocess = record["beam_members_per_s"], record["inprocess_members_per_s"]
  assert (beam - 0.05) / (inprocess + 0.05) - 5e-4 <= record["beam_vs_inprocess"] <= (
      (beam + 0.05) / (inprocess - 0.05) + 5e-4)


def test_task_records_have_the_documented_support_sizes(tmp_path):
  written = job_benchmark.write_task_records(str(tmp_path / "tasks.gz"), 7, max_support=3)
  records = job_benchmark.task_records
  assert list(written[records.MEMBER_KEY]) == [f"member-{t}" for t in range(7)]
  assert list(written[records.SUPPORT_SIZE]) == [0, 1, 2, 3, 0, 1, 2]  # t % (max_support + 1)
  assert os.path.getsize(tmp_path / "tasks.gz") > 0


@pytest.mark.parametrize("flag", ["--members", "--batch-size", "--repeats", "--rss-members"])
def test_non_positive_counts_are_named(flag, monkeypatch, capsys):
  with pytest.raises(SystemExit):
    _main(monkeypatch, flag, "0")
  assert "--members, --batch-size, --repeats and --rss-members must be >= 1" in (
      capsys.readouterr().err)
