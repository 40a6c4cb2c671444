"""`benchmarks/embedding_table.py`: the in-graph member table saved, loaded and looked up."""

import json
import sys

import pytest

from tests.benchmarks import scripts

_PATH = scripts.path("embedding_table")
table_benchmark = scripts.load("embedding_table")


def _main(monkeypatch, *argv):
  monkeypatch.setattr(sys, "argv", [_PATH, *argv])
  table_benchmark.main()


@pytest.mark.slow  # saves and loads a SavedModel
def test_small_table_prints_its_costs(monkeypatch, capsys):
  # `main` itself checks the last lookup: hits flagged personalised, their rows returned.
  _main(monkeypatch, "--members", "50", "--dim", "4", "--lookups", "20", "--repeats", "2")
  record = json.loads(capsys.readouterr().out)
  assert set(record) == {"members", "dim", "lookups", "build_s", "save_s", "load_s", "lookup_ms",
                         "savedmodel_mb", "graph_mb"}
  assert (record["members"], record["dim"], record["lookups"]) == (50, 4, 20)
  assert all(record[k] >= 0 for k in ("build_s", "save_s", "load_s", "lookup_ms"))
  assert 0 < record["graph_mb"] <= record["savedmodel_mb"]


def test_directory_size_counts_nested_files(tmp_path):
  (tmp_path / "a").mkdir()
  (tmp_path / "a" / "x").write_bytes(b"0" * 2**19)
  (tmp_path / "y").write_bytes(b"0" * 2**19)
  assert table_benchmark._directory_mb(str(tmp_path)) == 1.0  # pylint: disable=protected-access


def test_non_numeric_flag_is_named(monkeypatch, capsys):
  with pytest.raises(SystemExit):
    _main(monkeypatch, "--members", "many")
  assert "--members: invalid int value: 'many'" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--members", "--dim", "--lookups", "--repeats"])
def test_counts_below_one_are_named(monkeypatch, capsys, flag):
  with pytest.raises(SystemExit):
    _main(monkeypatch, flag, "0")
  assert f"{flag} must be >= 1, got 0" in capsys.readouterr().err
