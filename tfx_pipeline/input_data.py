"""Checks raw interaction CSVs and splits them by time into the pipeline's input.

The pipeline reads a *data root* with one directory per split::

    <data_root>/train/*.csv   interactions before the cutoff time
    <data_root>/eval/*.csv    interactions at or after it

and `CsvExampleGen` maps the two directories to the `train` and `eval`
splits (an input-based split: hash-based output splits would mix periods).
`prepare_data_root` builds such a root from one CSV, or from a directory of
CSVs, by cutting at a quantile of the timestamps, or validates a root that
is already split. Every file is checked up front, so a malformed file fails
with a message naming the file, line, column and value before any TFX
component starts.
"""

import csv
import dataclasses
import filecmp
import glob
import math
import os
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from limaml_keras import schema

TRAIN_DIR = "train"
EVAL_DIR = "eval"
_SPLIT_FILE_NAME = "interactions.csv"


@dataclasses.dataclass(frozen=True)
class DataSummary:
  """What `prepare_data_root` found and wrote.

  Attributes:
    data_root: directory holding `train/` and `eval/`.
    num_train: interactions in the training period.
    num_eval: interactions in the evaluation period.
    cutoff_timestamp: first Unix second of the evaluation period, or None
      when the input was already split.
  """
  data_root: str
  num_train: int
  num_eval: int
  cutoff_timestamp: Optional[int]


def csv_files(path: str) -> List[str]:
  """The CSV files at `path`: the file itself, or the `*.csv` in a directory.

  Raises:
    FileNotFoundError: when `path` does not exist or holds no CSV file.
  """
  if os.path.isfile(path):
    return [path]
  if not os.path.isdir(path):
    raise FileNotFoundError(f"no such file or directory: {path}")
  files = sorted(glob.glob(os.path.join(path, "*.csv")))
  if not files:
    raise FileNotFoundError(f"no *.csv file in {path}")
  return files


def is_split_root(path: str) -> bool:
  """Whether `path` is a directory with `train/` and `eval/` subdirectories."""
  return all(os.path.isdir(os.path.join(path, d)) for d in (TRAIN_DIR, EVAL_DIR))


class _ColumnChecks:
  """Per-column value checks of one CSV header against a `FeatureSpec`."""

  def __init__(self, path: str, header: Sequence[str], spec: schema.FeatureSpec):
    missing = [c for c in spec.all_columns() if c not in header]
    if missing:
      raise ValueError(f"{path}: missing columns {missing}; the header has {list(header)}")
    duplicated = sorted({c for c in header if list(header).count(c) > 1})
    if duplicated:
      raise ValueError(f"{path}: duplicated columns {duplicated} in the header")
    self._path = path
    self._width = len(header)
    index = {c: i for i, c in enumerate(header)}
    self.timestamp_index = index[schema.TIMESTAMP_COLUMN]
    self._checks = [(c, index[c], _check_id) for c in (schema.MEMBER_ID_COLUMN,
                                                        schema.ITEM_ID_COLUMN)]
    self._checks += [(schema.TIMESTAMP_COLUMN, self.timestamp_index, _check_timestamp),
                     (schema.LABEL_COLUMN, index[schema.LABEL_COLUMN], _check_label)]
    self._checks += [(c, index[c], _check_numeric) for c in spec.numeric_columns()]

  def check(self, line: int, row: Sequence[str]) -> int:
    """Validates one row; returns its timestamp."""
    if len(row) != self._width:
      raise ValueError(f"{self._path} line {line}: expected {self._width} fields, "
                       f"got {len(row)}")
    for column, i, check in self._checks:
      problem = check(row[i])
      if problem:
        raise ValueError(f"{self._path} line {line}: column {column!r} {problem}, "
                         f"got {row[i]!r}")
    return int(row[self.timestamp_index])


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


def _rows(path: str, spec: schema.FeatureSpec) -> Iterator[Tuple[List[str], int, List[str]]]:
  """Yields `(header, timestamp, row)` for every validated data row of `path`."""
  with open(path, newline="", encoding="utf-8") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if not header:
      raise ValueError(f"{path}: the file is empty (no header)")
    checks = _ColumnChecks(path, header, spec)
    for row in reader:
      if row:  # Blank lines are not rows.
        yield header, checks.check(reader.line_num, row), row


def validate_csv(path: str, spec: schema.FeatureSpec) -> Tuple[List[str], np.ndarray]:
  """Checks one raw-schema CSV (header and every value the pipeline relies on).

  Args:
    path: the CSV file.
    spec: its feature spec.

  Returns:
    `(header, timestamps)`.

  Raises:
    ValueError: naming the file, line, column and bad value.
  """
  header, timestamps = None, []
  for header, timestamp, _ in _rows(path, spec):
    timestamps.append(timestamp)
  if header is None:
    raise ValueError(f"{path}: no data rows")
  return header, np.asarray(timestamps, np.int64)


def time_cutoff(timestamps: np.ndarray, eval_fraction: float) -> int:
  """The first second of the evaluation period.

  Interactions at or after the cutoff (about the latest `eval_fraction` of
  them; ties stay together) form the evaluation period.

  Raises:
    ValueError: when `eval_fraction` is out of (0, 1) or either period would
      be empty.
  """
  if not 0.0 < eval_fraction < 1.0:
    raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction!r}")
  ordered = np.sort(np.asarray(timestamps, np.int64))
  if ordered.size < 2:
    raise ValueError(f"cannot split {ordered.size} interaction(s) into two periods")
  position = min(max(int(np.floor(ordered.size * (1.0 - eval_fraction))), 1), ordered.size - 1)
  cutoff = int(ordered[position])
  if cutoff <= ordered[0]:
    raise ValueError("cannot split by time: the training period would be empty (too many "
                     "interactions share the earliest timestamps)")
  return cutoff


class _StableCsvWriter:
  """Writes a CSV through a temporary file, leaving an identical existing file untouched.

  ExampleGen fingerprints its input by size and modification time, so an
  untouched file lets a rerun reuse cached components.
  """

  def __init__(self, path: str, header: Sequence[str]):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    self._path, self._temporary = path, f"{path}.tmp"
    self._file = open(self._temporary, "w", newline="", encoding="utf-8")
    self._writer = csv.writer(self._file, lineterminator="\n")
    self._writer.writerow(header)
    self.num_rows = 0

  def write(self, row: Sequence[str]) -> None:
    self._writer.writerow(row)
    self.num_rows += 1

  def close(self) -> None:
    self._file.close()
    if os.path.exists(self._path) and filecmp.cmp(self._path, self._temporary, shallow=False):
      os.remove(self._temporary)
    else:
      os.replace(self._temporary, self._path)


def split_by_time(files: Sequence[str], spec: schema.FeatureSpec, output_dir: str,
                  eval_fraction: float) -> DataSummary:
  """Validates `files` and writes them, cut at a time quantile, as a data root.

  Args:
    files: raw-schema CSV files with the same header.
    spec: their feature spec.
    output_dir: the data root to write (`train/` and `eval/` inside).
    eval_fraction: approximate share of interactions, the latest, in the
      evaluation period.

  Returns:
    The summary.
  """
  headers, timestamps = zip(*(validate_csv(path, spec) for path in files))
  for path, header in zip(files[1:], headers[1:]):
    if list(header) != list(headers[0]):
      raise ValueError(f"{path}: header {header} differs from {files[0]}'s {headers[0]}")
  cutoff = time_cutoff(np.concatenate(timestamps), eval_fraction)
  train, evaluation = (_StableCsvWriter(os.path.join(output_dir, directory, _SPLIT_FILE_NAME),
                                        headers[0]) for directory in (TRAIN_DIR, EVAL_DIR))
  for path in files:
    for _, timestamp, row in _rows(path, spec):
      (train if timestamp < cutoff else evaluation).write(row)
  train.close()
  evaluation.close()
  return DataSummary(data_root=output_dir, num_train=train.num_rows,
                     num_eval=evaluation.num_rows, cutoff_timestamp=cutoff)


def validate_split_root(data_root: str, spec: schema.FeatureSpec) -> DataSummary:
  """Validates a data root that already has `train/` and `eval/` CSVs."""
  counts = {}
  for directory in (TRAIN_DIR, EVAL_DIR):
    counts[directory] = sum(validate_csv(path, spec)[1].size
                            for path in csv_files(os.path.join(data_root, directory)))
  return DataSummary(data_root=data_root, num_train=counts[TRAIN_DIR],
                     num_eval=counts[EVAL_DIR], cutoff_timestamp=None)


def prepare_data_root(data_path: str, spec: schema.FeatureSpec, output_dir: str,
                      eval_fraction: float) -> DataSummary:
  """Returns a validated data root for `data_path`, splitting by time if needed.

  Args:
    data_path: a CSV file, a directory of CSV files, or a data root that is
      already split (`train/` and `eval/` subdirectories).
    spec: the feature spec of the files.
    output_dir: where to write the split data root when one is needed.
    eval_fraction: see `split_by_time`.

  Returns:
    The summary; `data_root` is `data_path` itself when it was already split.
  """
  if os.path.isdir(data_path) and is_split_root(data_path):
    return validate_split_root(data_path, spec)
  return split_by_time(csv_files(data_path), spec, output_dir, eval_fraction)
