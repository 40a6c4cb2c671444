"""The rules every raw interaction CSV obeys, on every path that reads one.

`tfx_pipeline.ops.input_data` (before `limaml pipeline run` starts TFX),
`tfx_pipeline.beam.member_supports` (`limaml embeddings generate|refresh`),
`limaml_keras.catalog` (`limaml serve predict`) and
`limaml_keras.preprocessing.read_raw_csv_frame` (the pandas path) all read raw
CSVs through `RawCsvReader`, and directories through `list_csv_files`, so one
file gets one verdict everywhere. No TensorFlow here.

What each kind of bad input gets:

* a directory: its `*.csv` and `*.csv.gz` files (any case) are read; other
  files and subdirectories are skipped, and a note names what was read and
  what was skipped and why;
* a gzip-compressed file (any name): decompressed while reading; a damaged one:
  ValueError "<file>: not a readable gzip file (...)";
* empty file: ValueError "<file>: the file is empty (no header)";
* header but no data rows: ValueError "<file>: no data rows";
* bytes that are not UTF-8: ValueError "<file> line L: not UTF-8 text (byte 0x.. ...)";
* a UTF-8 byte-order mark: dropped;
* missing column: ValueError "<file>: missing columns [...]; the header has [...]";
* duplicated column name: ValueError "<file>: duplicated columns [...] in the header";
* extra column: ignored (not passed on), named in `CheckReport.notes()`;
* row with too few or too many fields: ValueError "<file> line L: expected W fields, got n";
* empty `member_id` / `item_id`: ValueError "... column 'member_id' must not be empty, got ' '";
* id with a control character (newline, tab, ...): ValueError "... must not contain
  control characters" (member ids are written one per line into the served model);
* id with surrounding spaces: stripped (`' m1 '` is member `m1`), counted in
  `CheckReport.stripped_ids` and named in `notes()`; `limaml serve predict
  --member` strips the same way;
* timestamp not whole Unix seconds: ValueError "... must hold whole Unix seconds, got '12.5'";
* digits other than ASCII 0-9 (Arabic-Indic, full-width, `1_000`) in a timestamp
  or numeric feature: ValueError "... must be written in ASCII digits";
* timestamp 0 or negative: ValueError "... must be a positive Unix second"
  (such values are placeholders for a missing time, not events of 1970);
* timestamp of 12 or more digits (after year 5138 in seconds): ValueError
  "... timestamps look like milliseconds; divide by 1000" (or micro-, nanoseconds);
* label not 0 or 1: ValueError "... column 'label' must be 0 or 1, got '2'";
* numeric feature empty / text / NaN / inf: ValueError "... has a missing value" /
  "must be numeric" / "must be finite";
* missing categorical value: kept (it maps to the out-of-vocabulary slot);
* duplicate interaction (same member_id, item_id and timestamp): dropped, the first
  occurrence kept; counted in `CheckReport.dropped[DUPLICATE]` and named in `notes()`;
* interaction later than the as-of time (default: now): dropped; counted in
  `CheckReport.dropped[FUTURE]` and named in `notes()`.

Every error names the file, the physical line (1 = the header) and, for a
value, the column and the value. Duplicates are dropped rather than kept
because a repeated event is a logging artefact, and a copy on each side of a
member's support/query split would leak the query label into adaptation.
"""

import csv
import dataclasses
import gzip
import math
import os
import re
import time
import unicodedata
import zlib
from typing import AbstractSet, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

from limaml_keras import schema

#: `CheckReport.dropped` reason of repeated (member_id, item_id, timestamp) rows.
DUPLICATE = "duplicate_interactions"
#: `CheckReport.dropped` reason of rows later than the as-of time.
FUTURE = "future_interactions"
# Positions in a projected row: `spec.all_columns()` starts with `schema.KEY_COLUMNS`.
_MEMBER_INDEX, _ITEM_INDEX, _TIMESTAMP_INDEX = (
    schema.KEY_COLUMNS.index(c) for c in (schema.MEMBER_ID_COLUMN, schema.ITEM_ID_COLUMN,
                                          schema.TIMESTAMP_COLUMN))


#: File names a directory input reads (compared in lower case).
CSV_SUFFIXES = (".csv", ".csv.gz")
_GZIP_MAGIC = b"\x1f\x8b"
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*", re.ASCII)
_DECIMAL = re.compile(r"\s*[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*",
                      re.ASCII)
# Timestamps from 10**11 on (year 5138 in seconds) are in a finer unit: (limit, unit, divisor).
_FINER_UNITS = ((10**14, "milliseconds", 1000), (10**17, "microseconds", 10**6),
                (10**20, "nanoseconds", 10**9))
_FIRST_FINE_TIMESTAMP = 10**11


def id_problem(value: str) -> Optional[str]:
  """What is wrong with an id (`member_id`, `item_id`), or None.

  Surrounding spaces are not a problem: they are stripped (`clean_id`).
  """
  if not value.strip():
    return "must not be empty"
  if any(unicodedata.category(c) == "Cc" for c in value):
    return "must not contain control characters (newline, tab, ...)"
  return None


def _check_timestamp(value: str) -> Optional[str]:
  if not _INTEGER.fullmatch(value):
    try:
      int(value)
    except ValueError:
      return "must hold whole Unix seconds"
    return "must be written in ASCII digits"
  timestamp = int(value)
  if timestamp <= 0:
    return ("must be a positive Unix second (0 and negative values are placeholders for a "
            "missing time)")
  if timestamp >= _FIRST_FINE_TIMESTAMP:
    for limit, unit, divisor in _FINER_UNITS:
      if timestamp < limit:
        return f"must hold Unix seconds (timestamps look like {unit}; divide by {divisor})"
    return "must hold Unix seconds (the value is out of range)"
  return None


def _check_label(value: str) -> Optional[str]:
  return None if value.strip() in ("0", "1") else "must be 0 or 1"


def _check_numeric(value: str) -> Optional[str]:
  try:
    number = float(value)
  except ValueError:
    return "must be numeric" if value.strip() else "has a missing value"
  if not math.isfinite(number):
    return "must be finite"
  return None if _DECIMAL.fullmatch(value) else "must be written in ASCII digits"


class HeaderChecks:
  """Checks one CSV header against a `FeatureSpec` and validates its rows.

  Attributes:
    extra_columns: header columns the spec does not name (ignored).
  """

  def __init__(self, path: str, header: Sequence[str], spec: schema.FeatureSpec):
    """Checks the header.

    Raises:
      ValueError: on missing or duplicated columns, naming them and the file.
    """
    header = list(header)
    missing = [c for c in spec.all_columns() if c not in header]
    if missing:
      raise ValueError(f"{path}: missing columns {missing}; the header has {header}")
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
      raise ValueError(f"{path}: duplicated columns {duplicated} in the header")
    self._path = path
    self._width = len(header)
    index = {c: i for i, c in enumerate(header)}
    self.extra_columns = tuple(c for c in header if c not in spec.all_columns())
    self._projection = [index[c] for c in spec.all_columns()]
    self._checks = [(c, index[c], id_problem) for c in (schema.MEMBER_ID_COLUMN,
                                                         schema.ITEM_ID_COLUMN)]
    self._checks += [(schema.TIMESTAMP_COLUMN, index[schema.TIMESTAMP_COLUMN], _check_timestamp),
                     (schema.LABEL_COLUMN, index[schema.LABEL_COLUMN], _check_label)]
    self._checks += [(c, index[c], _check_numeric) for c in spec.numeric_columns()]

  def check(self, line: int, row: Sequence[str]) -> List[str]:
    """Validates one row; returns its values in `spec.all_columns()` order.

    Raises:
      ValueError: naming the file, line, column and bad value.
    """
    if len(row) != self._width:
      raise ValueError(f"{self._path} line {line}: expected {self._width} fields, "
                       f"got {len(row)}")
    for column, i, check in self._checks:
      problem = check(row[i])
      if problem:
        raise ValueError(f"{self._path} line {line}: column {column!r} {problem}, "
                         f"got {row[i]!r}")
    return [row[i] for i in self._projection]


def clean_id(value: str, name: str) -> str:
  """`value` without surrounding spaces.

  Raises:
    ValueError: "<name> must not be empty" / "must not contain control characters".
  """
  problem = id_problem(value)
  if problem:
    raise ValueError(f"{name} {problem}, got {value!r}")
  return value.strip()


def _open_bytes(path: str):
  """`path` opened for reading bytes; gzip-compressed files (by content) decompressed."""
  with open(path, "rb") as f:
    compressed = f.read(2) == _GZIP_MAGIC
  return gzip.open(path, "rb") if compressed else open(path, "rb")


def _text_lines(path: str) -> Iterator[str]:
  """The lines of `path` decoded as UTF-8 (a leading byte-order mark is dropped)."""
  with _open_bytes(path) as f:
    number = 0
    try:
      for number, raw in enumerate(f, start=1):
        try:
          yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
          raise ValueError(f"{path} line {number}: not UTF-8 text (byte 0x{raw[e.start]:02x} "
                           f"at character {e.start + 1}); re-encode the file as UTF-8") from None
    except (OSError, EOFError, zlib.error) as e:  # gzip's errors for damaged data.
      raise ValueError(f"{path}: not a readable gzip file ({e}) after line {number}") from None


def read_header(path: str) -> List[str]:
  """The header fields of a CSV file (decoded as `RawCsvReader` decodes it); [] when empty."""
  lines = _text_lines(path)
  try:
    return next(csv.reader(lines), None) or []
  except csv.Error as e:
    raise ValueError(f"{path} line 1: malformed CSV ({e})") from None
  finally:
    lines.close()


def list_csv_files(path: str) -> Tuple[List[str], Optional[str]]:
  """The raw CSV files at `path` and a note on what a directory held.

  Args:
    path: a file (read whatever its name), or a directory: its files named
      `*.csv` or `*.csv.gz` (any case) are read, other entries are skipped.

  Returns:
    `(files, note)`: the files, sorted; for a directory a note naming the
    files read and each entry skipped with the reason, else None.

  Raises:
    FileNotFoundError: when `path` does not exist or holds no CSV file.
  """
  if os.path.isfile(path):
    return [path], None
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no such file or directory: {path}")
  read, skipped = [], []
  for name in sorted(os.listdir(path)):
    if os.path.isdir(os.path.join(path, name)):
      skipped.append(f"{name} (a subdirectory; subdirectories are not read)")
    elif name.lower().endswith(CSV_SUFFIXES):
      read.append(name)
    else:
      skipped.append(f"{name} (not a .csv or .csv.gz file)")
  if not read:
    raise FileNotFoundError(f"no *.csv file (nor *.csv.gz) in {path}"
                            + (f"; skipped {', '.join(skipped)}" if skipped else ""))
  note = f"{path}: read {len(read)} file(s) ({', '.join(read)})"
  if skipped:
    note += f"; skipped {', '.join(skipped)}"
  return [os.path.join(path, name) for name in read], note


@dataclasses.dataclass
class CheckReport:
  """What `RawCsvReader` read, kept and dropped (over all the files it read).

  Attributes:
    as_of: rows with a later timestamp were dropped.
    rows_read: data rows read.
    rows_kept: data rows yielded.
    dropped: dropped rows by reason (`DUPLICATE`, `FUTURE`).
    extra_columns: file -> ignored columns, for files that had any.
    examples: reason -> "<file> line L" of the first dropped row.
    stripped_ids: ids whose surrounding spaces were stripped.
    stripped_example: "<file> line L ('<id>')" of the first.
    duplicate_lines: file -> physical lines of its dropped duplicates.
    listing_notes: notes on how the files were found (`list_csv_files`),
      put first by `notes()`.
  """
  as_of: int
  rows_read: int = 0
  rows_kept: int = 0
  dropped: Dict[str, int] = dataclasses.field(default_factory=dict)
  extra_columns: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
  examples: Dict[str, str] = dataclasses.field(default_factory=dict)
  stripped_ids: int = 0
  stripped_example: str = ""
  duplicate_lines: Dict[str, Set[int]] = dataclasses.field(default_factory=dict)
  listing_notes: List[str] = dataclasses.field(default_factory=list)

  def record_drop(self, reason: str, where: str) -> None:
    """Counts one dropped row; `where` ("<file> line L") is kept for the first."""
    self.dropped[reason] = self.dropped.get(reason, 0) + 1
    self.examples.setdefault(reason, where)

  def notes(self) -> List[str]:
    """One human-readable line per fallback taken (empty when none was)."""
    notes = list(self.listing_notes)
    notes += [f"{path}: ignored extra columns {list(columns)} (not in the feature spec)"
              for path, columns in self.extra_columns.items()]
    if self.stripped_ids:
      notes.append(f"stripped surrounding spaces from {self.stripped_ids} id(s) "
                   f"({schema.MEMBER_ID_COLUMN}, {schema.ITEM_ID_COLUMN}), e.g. "
                   f"{self.stripped_example}")
    if self.dropped.get(DUPLICATE):
      notes.append(f"dropped {self.dropped[DUPLICATE]} duplicate interaction(s) (same "
                   f"member_id, item_id and timestamp; the first is kept), e.g. "
                   f"{self.examples[DUPLICATE]}")
    if self.dropped.get(FUTURE):
      notes.append(f"dropped {self.dropped[FUTURE]} interaction(s) later than the as-of time "
                   f"{self.as_of}, e.g. {self.examples[FUTURE]}")
    return notes


class RawCsvReader:
  """Reads raw-schema CSVs, validating every row and applying the fallbacks.

  One reader remembers the interactions it has yielded, so duplicates are
  found across all the files it reads; use a new reader for a new pass. A
  reader given `duplicate_lines` (a first pass's `report.duplicate_lines`)
  drops exactly those lines instead, so a worker reading one file drops the
  duplicates a pass over all files found.

  Example::

    reader = RawCsvReader(spec, as_of=1700000000)
    for timestamp, row in reader.rows("a.csv"):   # row in spec.all_columns() order
      ...
    print(reader.report.notes())
  """

  def __init__(self, spec: schema.FeatureSpec, as_of: Optional[int] = None,
               duplicate_lines: Optional[Mapping[str, AbstractSet[int]]] = None):
    """Creates a reader.

    Args:
      spec: the feature spec the files follow.
      as_of: Unix second; later interactions are dropped (default: now).
      duplicate_lines: file -> lines to drop as duplicates (default: find them).
    """
    self._spec = spec
    self.report = CheckReport(as_of=int(time.time()) if as_of is None else int(as_of))
    self._seen: Set[Tuple[str, str, int]] = set()
    self._duplicate_lines = duplicate_lines
    #: Members of every data row read, kept or dropped.
    self.members_read: Set[str] = set()

  def rows(self, path: str) -> Iterator[Tuple[int, List[str]]]:
    """Yields `(timestamp, row)` for every kept data row of `path`.

    Raises:
      ValueError: on the errors of the module docstring.
    """
    reader = csv.reader(_text_lines(path))
    try:
      header = next(reader, None)
      if not header:
        raise ValueError(f"{path}: the file is empty (no header)")
      checks = HeaderChecks(path, header, self._spec)
      if checks.extra_columns:
        self.report.extra_columns[path] = checks.extra_columns
      has_rows = False
      for row in reader:
        if not row:  # Blank lines are not rows.
          continue
        has_rows = True
        kept = self._keep(path, reader.line_num, checks.check(reader.line_num, row))
        if kept is not None:
          yield kept
    except csv.Error as e:
      raise ValueError(f"{path} line {reader.line_num}: malformed CSV ({e})") from None
    if not has_rows:
      raise ValueError(f"{path}: no data rows")

  def _keep(self, path: str, line: int, row: List[str]) -> Optional[Tuple[int, List[str]]]:
    self.report.rows_read += 1
    timestamp = int(row[_TIMESTAMP_INDEX])
    where = f"{path} line {line}"
    for index in (_MEMBER_INDEX, _ITEM_INDEX):
      if row[index] != row[index].strip():
        self.report.stripped_ids += 1
        if self.report.stripped_ids == 1:
          self.report.stripped_example = f"{where} ({row[index]!r})"
        row[index] = row[index].strip()
    self.members_read.add(row[_MEMBER_INDEX])
    if timestamp > self.report.as_of:
      self.report.record_drop(FUTURE, f"{where} (timestamp {timestamp})")
      return None
    key = (row[_MEMBER_INDEX], row[_ITEM_INDEX], timestamp)
    if (key in self._seen if self._duplicate_lines is None
        else line in self._duplicate_lines.get(path, ())):
      self.report.record_drop(DUPLICATE, where)
      self.report.duplicate_lines.setdefault(path, set()).add(line)
      return None
    if self._duplicate_lines is None:
      self._seen.add(key)
    self.report.rows_kept += 1
    return timestamp, row
