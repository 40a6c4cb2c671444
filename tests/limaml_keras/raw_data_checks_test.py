"""Unit tests of the shared raw-CSV rules (the full matrix: tests/reliability/bad_input_test.py)."""

import time

import pytest

from limaml_keras import raw_data_checks
from limaml_keras import schema

SPEC = schema.FeatureSpec(member_numeric=("age",), item_categorical=("genre",))


def _write(path, text):
  path.write_text(text, encoding="utf-8")
  return str(path)


def test_rows_are_projected_to_spec_order(tmp_path):
  path = _write(tmp_path / "a.csv", "genre,label,extra,age,timestamp,item_id,member_id\n"
                                    "g,1,x,3.5,10,i,m\n")
  reader = raw_data_checks.RawCsvReader(SPEC, as_of=100)
  assert list(reader.rows(path)) == [(10, ["m", "i", "10", "1", "3.5", "g"])]
  assert reader.report.extra_columns == {path: ("extra",)}
  assert (reader.report.rows_read, reader.report.rows_kept) == (1, 1)


def test_duplicates_are_found_across_files_of_one_reader(tmp_path):
  header = ",".join(SPEC.all_columns())
  first = _write(tmp_path / "a.csv", f"{header}\nm,i,10,1,1,g\nm,j,10,1,1,g\n")
  second = _write(tmp_path / "b.csv", f"{header}\nm,i,10,0,2,h\nn,i,10,1,1,g\n")
  reader = raw_data_checks.RawCsvReader(SPEC, as_of=100)
  kept = [row[:2] for path in (first, second) for _, row in reader.rows(path)]
  assert kept == [["m", "i"], ["m", "j"], ["n", "i"]]
  assert reader.report.dropped == {raw_data_checks.DUPLICATE: 1}
  assert reader.report.examples[raw_data_checks.DUPLICATE] == f"{second} line 2"
  # A new reader starts afresh (a second pass sees the same rows).
  assert len(list(raw_data_checks.RawCsvReader(SPEC, as_of=100).rows(second))) == 2


def test_as_of_defaults_to_now(tmp_path):
  header = ",".join(SPEC.all_columns())
  later = int(time.time()) + 3600
  path = _write(tmp_path / "a.csv", f"{header}\nm,i,10,1,1,g\nm,i,{later},1,1,g\n")
  reader = raw_data_checks.RawCsvReader(SPEC)
  assert [t for t, _ in reader.rows(path)] == [10]
  assert reader.report.dropped == {raw_data_checks.FUTURE: 1}


def test_clean_input_has_no_notes(tmp_path):
  path = _write(tmp_path / "a.csv", ",".join(SPEC.all_columns()) + "\nm,i,10,1,1,\n")
  reader = raw_data_checks.RawCsvReader(SPEC, as_of=100)
  assert len(list(reader.rows(path))) == 1 and reader.report.notes() == []


def test_header_checks_name_the_file():
  with pytest.raises(ValueError, match=r"x.csv: missing columns \['age', 'genre'\]"):
    raw_data_checks.HeaderChecks("x.csv", list(schema.KEY_COLUMNS), SPEC)
