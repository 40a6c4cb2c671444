"""Tests of CSV validation and the time split into train/ and eval/."""

import csv
import hashlib
import os

import numpy as np
import pytest

from limaml_keras import raw_data_checks
from limaml_keras import schema
from tfx_pipeline.ops import input_data

SPEC = schema.FeatureSpec(member_numeric=("age",), item_categorical=("genre",))
HEADER = ["member_id", "item_id", "timestamp", "label", "age", "genre"]


def _write(path, rows, header=HEADER):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return str(path)


def _rows(n=10):
  return [[f"m{i % 3}", f"i{i}", str(100 + i), str(i % 2), str(20.5 + i), "g"] for i in range(n)]


def _read(path):
  with open(path, newline="") as f:
    return list(csv.reader(f))


def test_split_by_time(tmp_path):
  source = _write(tmp_path / "in" / "interactions.csv", _rows(10)[::-1])
  summary = input_data.prepare_data_root(source, SPEC, str(tmp_path / "data"), 0.3)
  assert (summary.num_train, summary.num_eval, summary.cutoff_timestamp) == (7, 3, 107)
  train = _read(tmp_path / "data" / "train" / "interactions.csv")
  evaluation = _read(tmp_path / "data" / "eval" / "interactions.csv")
  assert train[0] == HEADER and evaluation[0] == HEADER
  assert max(int(r[2]) for r in train[1:]) < 107 <= min(int(r[2]) for r in evaluation[1:])
  assert sorted(train[1:] + evaluation[1:]) == sorted(_rows(10))


def test_rerun_leaves_identical_files_untouched(tmp_path):
  source = _write(tmp_path / "interactions.csv", _rows(10))
  input_data.prepare_data_root(source, SPEC, str(tmp_path / "data"), 0.3)
  train = tmp_path / "data" / "train" / "interactions.csv"
  os.utime(train, (1, 1))
  input_data.prepare_data_root(source, SPEC, str(tmp_path / "data"), 0.3)
  assert os.stat(train).st_mtime == 1
  input_data.prepare_data_root(source, SPEC, str(tmp_path / "data"), 0.5)
  assert os.stat(train).st_mtime != 1


def test_same_input_gives_byte_identical_data_roots(tmp_path):
  rows = _rows(50)
  source = _write(tmp_path / "interactions.csv", rows[::-1] + rows[:5])  # 5 duplicates.
  digests = []
  for run in ("a", "b"):
    summary = input_data.prepare_data_root(source, SPEC, str(tmp_path / run), 0.3, as_of=10**6)
    assert summary.dropped == {raw_data_checks.DUPLICATE: 5}
    digests.append([hashlib.sha256((tmp_path / run / d / "interactions.csv").read_bytes())
                    .hexdigest() for d in ("train", "eval")])
  assert digests[0] == digests[1]


def test_directory_of_csvs_is_concatenated(tmp_path):
  rows = _rows(10)
  _write(tmp_path / "in" / "a.csv", rows[:4])
  _write(tmp_path / "in" / "b.csv", rows[4:])
  summary = input_data.prepare_data_root(str(tmp_path / "in"), SPEC, str(tmp_path / "data"), 0.5)
  assert (summary.num_train, summary.num_eval) == (5, 5)


def test_split_root_keeps_its_split_and_is_checked_across_splits(tmp_path):
  rows = _rows(6)
  _write(tmp_path / "root" / "train" / "x.csv", rows[:4])
  _write(tmp_path / "root" / "eval" / "y.csv", rows[3:])  # rows[3] is in both splits.
  summary = input_data.prepare_data_root(str(tmp_path / "root"), SPEC, str(tmp_path / "out"), 0.2)
  assert summary.data_root == str(tmp_path / "out") and summary.cutoff_timestamp is None
  assert (summary.num_train, summary.num_eval) == (4, 2)
  assert summary.dropped == {raw_data_checks.DUPLICATE: 1}
  assert _read(tmp_path / "out" / "eval" / "interactions.csv")[1:] == rows[4:]


def test_extra_columns_are_left_out_with_a_note(tmp_path):
  header = ["note"] + HEADER[::-1]
  source = _write(tmp_path / "interactions.csv", [["x"] + r[::-1] for r in _rows(10)], header)
  summary = input_data.prepare_data_root(source, SPEC, str(tmp_path / "data"), 0.3)
  assert _read(tmp_path / "data" / "train" / "interactions.csv")[0] == HEADER
  assert summary.notes == (f"{source}: ignored extra columns ['note'] (not in the feature spec)",)


@pytest.mark.parametrize("split_root", [False, True])
def test_failed_run_leaves_the_previous_data_root_untouched(tmp_path, split_root):
  source = _write(tmp_path / "interactions.csv", _rows(10))
  input_data.prepare_data_root(source, SPEC, str(tmp_path / "data"), 0.3)
  before = {d: _read(tmp_path / "data" / d / "interactions.csv") for d in ("train", "eval")}
  rows = _rows(2000)
  rows[-1][HEADER.index("label")] = "7"  # The last line is bad.
  if split_root:  # Fails while writing, after train/ is complete in the staging directory.
    _write(tmp_path / "bad" / "train" / "a.csv", _rows(5))
    bad = _write(tmp_path / "bad" / "eval" / "b.csv", rows)
    data_path = str(tmp_path / "bad")
  else:  # Fails in the first pass, before anything is written.
    data_path = bad = _write(tmp_path / "bad.csv", rows)
  with pytest.raises(ValueError, match=f"{bad} line 2001: column 'label' must be 0 or 1"):
    input_data.prepare_data_root(data_path, SPEC, str(tmp_path / "data"), 0.3)
  assert {d: _read(tmp_path / "data" / d / "interactions.csv") for d in before} == before
  assert sorted(os.listdir(tmp_path / "data")) == ["eval", "train"]


def test_staging_files_are_outside_the_split_directories(tmp_path):
  source = _write(tmp_path / "interactions.csv", _rows(10))
  input_data.prepare_data_root(source, SPEC, str(tmp_path / "data"), 0.3)
  assert sorted(os.listdir(tmp_path / "data")) == ["eval", "train"]
  assert os.listdir(tmp_path / "data" / "train") == ["interactions.csv"]


@pytest.mark.parametrize("column, value, message", [
    ("label", "yes", "line 3: column 'label' must be 0 or 1, got 'yes'"),
    ("label", "2", "column 'label' must be 0 or 1"),
    ("timestamp", "12.5", "column 'timestamp' must hold whole Unix seconds, got '12.5'"),
    ("age", "old", "column 'age' must be numeric, got 'old'"),
    ("age", "", "column 'age' has a missing value"),
    ("age", "nan", "column 'age' must be finite"),
    ("member_id", " ", "column 'member_id' must not be empty"),
])
def test_bad_value_is_named(tmp_path, column, value, message):
  rows = _rows(4)
  rows[1][HEADER.index(column)] = value
  path = _write(tmp_path / "interactions.csv", rows)
  with pytest.raises(ValueError, match=message.replace("(", r"\(")) as error:
    input_data.validate_csv(path, SPEC)
  assert path in str(error.value)


def test_missing_column_is_named(tmp_path):
  path = _write(tmp_path / "interactions.csv", [r[:3] + r[4:] for r in _rows(3)],
                header=[c for c in HEADER if c != "label"])
  with pytest.raises(ValueError, match=r"missing columns \['label'\]"):
    input_data.validate_csv(path, SPEC)


def test_ragged_row_is_named(tmp_path):
  rows = _rows(3)
  rows[2] = rows[2][:-1]
  path = _write(tmp_path / "interactions.csv", rows)
  with pytest.raises(ValueError, match="line 4: expected 6 fields, got 5"):
    input_data.validate_csv(path, SPEC)


def test_categorical_values_may_be_missing(tmp_path):
  rows = _rows(3)
  rows[0][HEADER.index("genre")] = ""
  report = input_data.validate_csv(_write(tmp_path / "interactions.csv", rows), SPEC)
  assert (report.rows_read, report.rows_kept) == (3, 3)



def test_missing_input_is_reported(tmp_path):
  with pytest.raises(FileNotFoundError, match="no such file"):
    input_data.csv_files(str(tmp_path / "nope.csv"))
  with pytest.raises(FileNotFoundError, match="no \\*.csv file"):
    input_data.csv_files(str(tmp_path))
