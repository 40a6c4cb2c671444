"""The rules every raw interaction CSV obeys, on every path that reads one.

`tfx_pipeline.ops.input_data` (before `limaml pipeline run` starts TFX) and
`limaml_keras.preprocessing.read_raw_csv` (the pandas path) both read raw
CSVs through `RawCsvReader`, so one file gets one verdict everywhere. No
TensorFlow here.

What each kind of bad input gets:

* empty file: ValueError "<file>: the file is empty (no header)";
* header but no data rows: ValueError "<file>: no data rows";
* bytes that are not UTF-8: ValueError "<file> line L: not UTF-8 text (byte 0x.. ...)";
* missing column: ValueError "<file>: missing columns [...]; the header has [...]";
* duplicated column name: ValueError "<file>: duplicated columns [...] in the header";
* extra column: ignored (not passed on), named in `CheckReport.notes()`;
* row with too few or too many fields: ValueError "<file> line L: expected W fields, got n";
* empty `member_id` / `item_id`: ValueError "... column 'member_id' must not be empty, got ' '";
* timestamp not whole Unix seconds: ValueError "... must hold whole Unix seconds, got '12.5'";
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
import math
import time
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

from limaml_keras import schema

#: `CheckReport.dropped` reason of repeated (member_id, item_id, timestamp) rows.
DUPLICATE = "duplicate_interactions"
#: `CheckReport.dropped` reason of rows later than the as-of time.
FUTURE = "future_interactions"
# Positions in a projected row: `spec.all_columns()` starts with `schema.KEY_COLUMNS`.
_MEMBER_INDEX, _ITEM_INDEX, _TIMESTAMP_INDEX = (
    schema.KEY_COLUMNS.index(c) for c in (schema.MEMBER_ID_COLUMN, schema.ITEM_ID_COLUMN,
                                          schema.TIMESTAMP_COLUMN))


def _check_id(value: str) -> Optional[str]:
  return None if value.strip() else "must not be empty"


def _check_timestamp(value: str) -> Optional[str]:
  try:
    int(value)
  except ValueError:
    return "must hold whole Unix seconds"
  return None


def _check_label(value: str) -> Optional[str]:
  return None if value.strip() in ("0", "1") else "must be 0 or 1"


def _check_numeric(value: str) -> Optional[str]:
  try:
    number = float(value)
  except ValueError:
    return "must be numeric" if value.strip() else "has a missing value"
  return None if math.isfinite(number) else "must be finite"


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
    self._checks = [(c, index[c], _check_id) for c in (schema.MEMBER_ID_COLUMN,
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


def _text_lines(path: str) -> Iterator[str]:
  """The lines of `path` decoded as UTF-8 (a leading byte-order mark is dropped)."""
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      try:
        yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
      except UnicodeDecodeError as e:
        raise ValueError(f"{path} line {number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                         f"character {e.start + 1}); re-encode the file as UTF-8") from None


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
  """
  as_of: int
  rows_read: int = 0
  rows_kept: int = 0
  dropped: Dict[str, int] = dataclasses.field(default_factory=dict)
  extra_columns: Dict[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
  examples: Dict[str, str] = dataclasses.field(default_factory=dict)

  def record_drop(self, reason: str, where: str) -> None:
    """Counts one dropped row; `where` ("<file> line L") is kept for the first."""
    self.dropped[reason] = self.dropped.get(reason, 0) + 1
    self.examples.setdefault(reason, where)

  def notes(self) -> List[str]:
    """One human-readable line per fallback taken (empty when none was)."""
    notes = [f"{path}: ignored extra columns {list(columns)} (not in the feature spec)"
             for path, columns in self.extra_columns.items()]
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
  found across all the files it reads; use a new reader for a new pass.

  Example::

    reader = RawCsvReader(spec, as_of=1700000000)
    for timestamp, row in reader.rows("a.csv"):   # row in spec.all_columns() order
      ...
    print(reader.report.notes())
  """

  def __init__(self, spec: schema.FeatureSpec, as_of: Optional[int] = None):
    """Creates a reader.

    Args:
      spec: the feature spec the files follow.
      as_of: Unix second; later interactions are dropped (default: now).
    """
    self._spec = spec
    self.report = CheckReport(as_of=int(time.time()) if as_of is None else int(as_of))
    self._seen: Set[Tuple[str, str, int]] = set()

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
    if timestamp > self.report.as_of:
      self.report.record_drop(FUTURE, f"{where} (timestamp {timestamp})")
      return None
    key = (row[_MEMBER_INDEX], row[_ITEM_INDEX], timestamp)
    if key in self._seen:
      self.report.record_drop(DUPLICATE, where)
      return None
    self._seen.add(key)
    self.report.rows_kept += 1
    return timestamp, row
