"""`limaml embeddings generate --interactions` end to end, and the CLI's argument checks.

`refresh` runs through the CLI in `refresh_test.py`; `generate --tasks` in
`embedding_job_test.py`.
"""

import contextlib
import csv
import io
import json
import os

import pytest

from limaml import cli
from tfx_pipeline.beam import embedding_job
from tfx_pipeline.models import export
from tfx_pipeline import testing


def _main(capsys, *argv):
  code = cli.main(["embeddings", *argv])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


@pytest.mark.slow  # a Beam run: measured 35-130 s on 2 busy cores
def test_generate_from_interaction_csvs(tmp_path):
  tft_output = testing.transform_output(str(tmp_path / "transform"))
  model_dir = export.export_serving_model(testing.untrained_model(tft_output), tft_output,
                                          str(tmp_path / "trainer"))
  with open(tmp_path / "interactions.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(testing.RAW_FEATURE_SPEC)
    writer.writerows([(7, "x", 1, 1, 20.0, 1990), (7, "y", 3, 0, 30.0, 2010),
                      (7, "x", 4, 1, 30.0, 1990), (8, "y", 2, 0, 40.0, 2000)])
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    code = cli.main(["embeddings", "generate", "--model", model_dir, "--interactions",
                     str(tmp_path / "*.csv"), "--transform-graph", str(tmp_path / "transform"),
                     "--max-support", "2", "--output", str(tmp_path / "out")])
  assert code == 0
  summary = json.loads(stdout.getvalue().strip().splitlines()[-1])
  assert summary == {"output": str(tmp_path / "out"), "model_version": "trainer",
                     embedding_job.MEMBERS: 2, embedding_job.EMPTY_SUPPORTS: 0,
                     embedding_job.TRUNCATED_SUPPORTS: 1, "rows_read": 4, "rows_kept": 4,
                     "duplicate_interactions": 0, "future_interactions": 0,
                     "members_all_dropped": 0, "members_only_unknown_items": 0, "notes": []}
  ids, embeddings, table = embedding_job.read_table(str(tmp_path / "out"))
  assert ids == ["7", "8"] and embeddings.shape == (2, testing.EMBEDDING_DIM)
  assert table.column(embedding_job.AS_OF_TIMESTAMP).to_pylist() == [4, 2]


@pytest.mark.parametrize("argv,message", [
    (["generate", "--model", "m", "--output", "o", "--interactions", "a.csv"],
     "--interactions needs --transform-graph"),
    (["generate", "--model", "m", "--output", "o", "--tasks", "t", "--transform-graph", "g"],
     "--transform-graph goes with --interactions"),
    (["generate", "--model", "m", "--output", "o", "--tasks", "t", "--batch-size", "0"],
     "--batch-size must be >= 1"),
    (["generate", "--model", "m", "--output", "o", "--tasks", "t", "--rows-per-shard", "0"],
     "--rows-per-shard must be >= 1"),
    (["refresh", "--model", "m", "--transform-graph", "g", "--interactions", "a",
      "--model-base-path", "b", "--max-support", "0"], "--max-support must be >= 1"),
])
def test_bad_arguments_give_clear_errors(capsys, monkeypatch, tmp_path, argv, message):
  monkeypatch.chdir(tmp_path)
  code, _, err = _main(capsys, *argv)
  assert code == 1
  assert message in err
  assert os.listdir(tmp_path) == []


def test_tasks_and_interactions_are_exclusive(capsys):
  with pytest.raises(SystemExit):
    cli.main(["embeddings", "generate", "--model", "m", "--output", "o", "--tasks", "t",
              "--interactions", "a.csv"])
  assert "not allowed with argument" in capsys.readouterr().err
