"""The bad-input matrix: every row a case, at both raw-CSV boundaries.

`pipeline` is `tfx_pipeline.ops.input_data.prepare_data_root` (what `limaml
pipeline run` calls before TFX starts); `pandas` is
`limaml_keras.preprocessing.read_raw_csv_frame_with_report`; `embeddings` is
`tfx_pipeline.beam.member_supports.check_csv_input` (what `limaml embeddings
generate|refresh` run before their Beam job). All must give the same verdict:
the same error, or the same kept rows and the same counts.
"""

import csv
import gzip
import os
import shutil

import pytest
import tensorflow as tf

from limaml import cli
from limaml_keras import preprocessing
from limaml_keras import raw_data_checks
from limaml_keras import schema
from tfx_pipeline.beam import member_supports
from tfx_pipeline.ops import input_data

SPEC = schema.FeatureSpec(member_numeric=("age",), item_categorical=("genre",))
HEADER = list(SPEC.all_columns())
AS_OF = 1_000
BOUNDARIES = ("pipeline", "pandas", "embeddings")
# The raw features of a Transform graph trained on SPEC's columns.
RAW_FEATURE_SPEC = {"member_id": tf.io.FixedLenFeature([], tf.string),
                    "item_id": tf.io.FixedLenFeature([], tf.string),
                    "timestamp": tf.io.FixedLenFeature([], tf.int64),
                    "label": tf.io.FixedLenFeature([], tf.int64),
                    "age": tf.io.FixedLenFeature([], tf.float32),
                    "genre": tf.io.FixedLenFeature([], tf.string)}


def _good_rows(n=10):
  return [[f"m{i % 3}", f"i{i}", str(100 + i), str(i % 2), str(20.5 + i), "g"] for i in range(n)]


def _write_text(path, text: bytes) -> str:
  with open(path, "wb") as f:
    f.write(text)
  return str(path)


def _csv_bytes(rows, header=HEADER) -> bytes:
  lines = [",".join(header)] + [",".join(row) for row in rows]
  return ("\n".join(lines) + "\n").encode("utf-8")


def _with_value(column, value, row=4):
  rows = _good_rows()
  rows[row][HEADER.index(column)] = value
  return _csv_bytes(rows)


def _load(boundary, path, tmp_path):
  """Kept `(member_id, item_id, timestamp)` rows, dropped counts and notes."""
  if boundary == "pipeline":
    summary = input_data.prepare_data_root(path, SPEC, str(tmp_path / "root"), 0.3, as_of=AS_OF)
    rows = []
    for directory in (input_data.TRAIN_DIR, input_data.EVAL_DIR):
      with open(tmp_path / "root" / directory / "interactions.csv", newline="") as f:
        table = list(csv.reader(f))
      assert table[0] == HEADER
      rows += [tuple(r) for r in table[1:]]
    return sorted(r[:3] for r in rows), dict(summary.dropped), list(summary.notes)
  if boundary == "embeddings":
    checked = member_supports.check_csv_input([path], RAW_FEATURE_SPEC, as_of=AS_OF)
    rows = [tuple(row[:3]) for _, row in checked.kept_rows()]
    return sorted(rows), dict(checked.report.dropped), list(checked.notes)
  frame, report = preprocessing.read_raw_csv_frame_with_report(path, SPEC, as_of=AS_OF)
  assert list(frame.columns) == HEADER
  rows = [(m, i, str(t)) for m, i, t in zip(frame.member_id, frame.item_id, frame.timestamp)]
  return sorted(rows), dict(report.dropped), report.notes()


_ERRORS = {
    "empty file": (b"", r"the file is empty \(no header\)"),
    "header only": (_csv_bytes([]), "no data rows"),
    "missing column": (_csv_bytes([r[:3] + r[4:] for r in _good_rows()],
                                  [c for c in HEADER if c != "label"]),
                       r"missing columns \['label'\]"),
    "duplicated column": (_csv_bytes([r + ["1"] for r in _good_rows()], HEADER + ["age"]),
                          r"duplicated columns \['age'\]"),
    "non-UTF-8 bytes": (_csv_bytes(_good_rows()).replace(b"i5", b"\xe9t\xe9"),
                        r"line 7: not UTF-8 text \(byte 0xe9"),
    "NaN feature": (_with_value("age", "nan"), "line 6: column 'age' must be finite, got 'nan'"),
    "inf feature": (_with_value("age", "-inf"), "line 6: column 'age' must be finite"),
    "text feature": (_with_value("age", "old"), "line 6: column 'age' must be numeric, got 'old'"),
    "missing numeric": (_with_value("age", ""), "line 6: column 'age' has a missing value"),
    "label 2": (_with_value("label", "2"), "line 6: column 'label' must be 0 or 1, got '2'"),
    "label -1": (_with_value("label", "-1"), "column 'label' must be 0 or 1, got '-1'"),
    "label text": (_with_value("label", "yes"), "column 'label' must be 0 or 1, got 'yes'"),
    "fractional timestamp": (_with_value("timestamp", "104.5"),
                             "line 6: column 'timestamp' must hold whole Unix seconds"),
    "empty member id": (_with_value("member_id", ""), "column 'member_id' must not be empty"),
    "short row": (_csv_bytes(_good_rows()[:4] + [_good_rows()[4][:-1]]),
                  "line 6: expected 6 fields, got 5"),
    "NUL byte": (_csv_bytes(_good_rows()).replace(b"i5", b"i\x005"),
                 "line 7: malformed CSV"),
    "Arabic-Indic digits": (_with_value("timestamp", "\u0661\u0660\u0664"),
                            "line 6: column 'timestamp' must be written in ASCII digits"),
    "full-width digits": (_with_value("age", "\uff12\uff10"),
                          "line 6: column 'age' must be written in ASCII digits"),
    "digit separators": (_with_value("age", "1_000"),
                         "line 6: column 'age' must be written in ASCII digits"),
    "huge negative timestamp": (_with_value("timestamp", "-99999999999999999999"),
                                "line 6: column 'timestamp' must be a positive Unix second"),
    "zero timestamp": (_with_value("timestamp", "0"),
                       "line 6: column 'timestamp' must be a positive Unix second"),
    "negative timestamp": (_with_value("timestamp", "-5"),
                           "line 6: column 'timestamp' must be a positive Unix second"),
    "millisecond timestamps": (
        _csv_bytes([r[:2] + [str(1_700_000_000_000 + i)] + r[3:]
                    for i, r in enumerate(_good_rows())]),
        "line 2: column 'timestamp' .*timestamps look like milliseconds; divide by 1000"),
    "microsecond timestamp": (_with_value("timestamp", "1700000000000000"),
                              "timestamps look like microseconds; divide by 1000000"),
    "id with a newline": (_with_value("member_id", '"m\n1"'),
                          "line 7: column 'member_id' must not contain control characters"),
    "id with a tab": (_with_value("item_id", "i\t1"),
                      "line 6: column 'item_id' must not contain control characters"),
    "gzip that is not": (b"\x1f\x8b" + b"garbage", "not a readable gzip file"),
}


@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("case", sorted(_ERRORS))
def test_bad_input_raises_a_named_error(tmp_path, boundary, case):
  content, message = _ERRORS[case]
  path = _write_text(tmp_path / "interactions.csv", content)
  with pytest.raises(ValueError, match=message) as error:
    _load(boundary, path, tmp_path)
  assert str(error.value).startswith(path)
  assert "\n" not in str(error.value)
  assert not os.path.exists(tmp_path / "root" / input_data.TRAIN_DIR)


# `embeddings` rejects extra columns: its columns must be the Transform graph's raw features
# (tests/tfx_pipeline/beam/member_supports_test.py).
@pytest.mark.parametrize("boundary", ("pipeline", "pandas"))
def test_extra_columns_are_ignored_with_a_note(tmp_path, boundary):
  rows = [["x", *r[:2], "y", *r[2:]] for r in _good_rows()]
  path = _write_text(tmp_path / "in.csv",
                     _csv_bytes(rows, ["source"] + HEADER[:2] + ["device"] + HEADER[2:]))
  kept, dropped, notes = _load(boundary, path, tmp_path)
  assert kept == sorted(tuple(r[:3]) for r in _good_rows()) and dropped == {}
  assert notes == [f"{path}: ignored extra columns ['source', 'device'] (not in the feature spec)"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_duplicate_interactions_are_dropped_and_counted(tmp_path, boundary):
  rows = _good_rows()
  copy = list(rows[6])
  copy[HEADER.index("label")] = "1" if copy[HEADER.index("label")] == "0" else "0"
  path = _write_text(tmp_path / "in.csv", _csv_bytes(rows + [rows[2], copy, rows[2]]))
  kept, dropped, notes = _load(boundary, path, tmp_path)
  assert kept == sorted(tuple(r[:3]) for r in rows)
  assert dropped == {raw_data_checks.DUPLICATE: 3}
  assert notes == [f"dropped 3 duplicate interaction(s) (same member_id, item_id and timestamp; "
                   f"the first is kept), e.g. {path} line 12"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_future_interactions_are_dropped_and_counted(tmp_path, boundary):
  rows = _good_rows()
  rows[3][HEADER.index("timestamp")] = str(AS_OF + 1)
  rows[8][HEADER.index("timestamp")] = "99999999999"  # Milliseconds, say.
  path = _write_text(tmp_path / "in.csv", _csv_bytes(rows))
  kept, dropped, notes = _load(boundary, path, tmp_path)
  assert kept == sorted(tuple(r[:3]) for i, r in enumerate(rows) if i not in (3, 8))
  assert dropped == {raw_data_checks.FUTURE: 2}
  assert notes == [f"dropped 2 interaction(s) later than the as-of time {AS_OF}, e.g. "
                   f"{path} line 5 (timestamp {AS_OF + 1})"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_only_future_interactions_is_an_error(tmp_path, boundary):
  rows = [r[:2] + [str(AS_OF + 10 + i)] + r[3:] for i, r in enumerate(_good_rows())]
  path = _write_text(tmp_path / "in.csv", _csv_bytes(rows))
  if boundary == "pandas":  # A frame may be empty; Preprocessor.fit rejects it.
    kept, dropped, _ = _load(boundary, path, tmp_path)
    assert kept == [] and dropped == {raw_data_checks.FUTURE: 10}
    return
  with pytest.raises(ValueError, match="no interaction left after the checks"):
    _load(boundary, path, tmp_path)


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_byte_order_mark_blank_lines_and_crlf_are_accepted(tmp_path, boundary):
  content = b"\xef\xbb\xbf" + _csv_bytes(_good_rows()).replace(b"\n", b"\r\n") + b"\r\n"
  kept, dropped, notes = _load(boundary, _write_text(tmp_path / "in.csv", content), tmp_path)
  assert kept == sorted(tuple(r[:3]) for r in _good_rows()) and not dropped and not notes


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_ids_with_surrounding_spaces_are_stripped_with_a_note(tmp_path, boundary):
  rows = _good_rows()
  rows[2][0], rows[5][1] = f" {rows[2][0]}", f"{rows[5][1]}  "
  path = _write_text(tmp_path / "in.csv", _csv_bytes(rows))
  kept, dropped, notes = _load(boundary, path, tmp_path)
  assert kept == sorted(tuple(r[:3]) for r in _good_rows()) and not dropped
  assert notes == [f"stripped surrounding spaces from 2 id(s) (member_id, item_id), e.g. "
                   f"{path} line 4 (' m2')"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_gzipped_csv_is_read(tmp_path, boundary):
  path = str(tmp_path / "in.csv.gz")
  with gzip.open(path, "wb") as f:
    f.write(_csv_bytes(_good_rows()))
  kept, dropped, notes = _load(boundary, path, tmp_path)
  assert kept == sorted(tuple(r[:3]) for r in _good_rows()) and not dropped and not notes


@pytest.mark.parametrize("boundary", ("pipeline", "embeddings"))
def test_directory_input_says_what_was_read_and_skipped(tmp_path, boundary):
  rows = _good_rows(12)
  source = tmp_path / "in"
  os.makedirs(source / "sub")
  _write_text(source / "a.csv", _csv_bytes(rows[:3]))
  _write_text(source / "b.CSV", _csv_bytes(rows[3:6]))
  with gzip.open(source / "c.csv.gz", "wb") as f:
    f.write(_csv_bytes(rows[6:9]))
  _write_text(source / "sub" / "d.csv", _csv_bytes(rows[9:]))
  _write_text(source / "e.tsv", b"member_id\titem_id\n")
  kept, _, notes = _load(boundary, str(source), tmp_path)
  assert kept == sorted(tuple(r[:3]) for r in rows[:9])
  assert notes == [f"{source}: read 3 file(s) (a.csv, b.CSV, c.csv.gz); skipped e.tsv (not a "
                   f".csv or .csv.gz file), sub (a subdirectory; subdirectories are not read)"]


@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_missing_categorical_value_is_kept(tmp_path, boundary):
  kept, _, _ = _load(boundary, _write_text(tmp_path / "in.csv", _with_value("genre", "")),
                     tmp_path)
  assert len(kept) == 10


def test_pipeline_run_reports_bad_data_in_one_line(tmp_path, capsys):
  path = _write_text(tmp_path / "in.csv", _with_value("label", "2"))
  schema.save_spec(SPEC, str(tmp_path / schema.SPEC_FILE_NAME))
  code = cli.main(["pipeline", "run", "--data", path, "--output", str(tmp_path / "out")])
  err = capsys.readouterr().err
  assert code == 1
  assert "Traceback" not in err
  # Only the last line: importing TFX prints FutureWarnings of google-api-core before it.
  assert err.splitlines()[-1] == (f"limaml pipeline: error: {path} line 6: column 'label' must "
                                  f"be 0 or 1, got '2'")
  assert not os.path.exists(tmp_path / "out" / "data" / input_data.TRAIN_DIR)
