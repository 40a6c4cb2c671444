"""Checks raw interaction CSVs and splits them by time into the pipeline's input.

The pipeline reads a *data root* with one directory per split::

    <data_root>/train/*.csv   interactions before the cutoff time
    <data_root>/eval/*.csv    interactions at or after it

and `CsvExampleGen` maps the two directories to the `train` and `eval`
splits (an input-based split: hash-based output splits would mix periods).
`prepare_data_root` builds such a root from one CSV, or from a directory of
CSVs, by cutting at a quantile of the timestamps, or from a root that is
already split. Every row is checked by the rules of
`limaml_keras.raw_data_checks` (shared with the pandas path) before any TFX
component starts: a malformed file fails with a message naming the file,
line, column and value; extra columns are left out, and duplicate and future
interactions are dropped, counted in `DataSummary.dropped` and described in
`DataSummary.notes`.

Guarantees: the output depends only on the input files, `eval_fraction`
and `as_of` (a rerun writes byte-identical files and leaves unchanged files
untouched, so ExampleGen's cache holds), and a run that fails leaves the
previous `train/` and `eval/` as they were (both files are written to a
staging directory first and moved into place only when complete).
"""

import csv
import dataclasses
import filecmp
import os
import shutil
import sys
import time
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from limaml_keras import raw_data_checks
from limaml_keras import schema
from limaml_keras import task_settings

TRAIN_DIR = "train"
EVAL_DIR = "eval"
_SPLIT_FILE_NAME = "interactions.csv"
_STAGING_DIR = ".staging"


@dataclasses.dataclass(frozen=True)
class DataSummary:
  """What `prepare_data_root` found and wrote.

  Attributes:
    data_root: directory holding `train/` and `eval/`.
    num_train: interactions in the training period.
    num_eval: interactions in the evaluation period.
    cutoff_timestamp: first Unix second of the evaluation period, or None
      when the input was already split.
    dropped: rows dropped by the checks, by reason
      (`limaml_keras.raw_data_checks.DUPLICATE`, `FUTURE`).
    notes: one line per fallback taken (extra columns, dropped rows), for the
      user to read.
  """
  data_root: str
  num_train: int
  num_eval: int
  cutoff_timestamp: Optional[int]
  dropped: Mapping[str, int] = dataclasses.field(default_factory=dict)
  notes: Tuple[str, ...] = ()


def csv_files(path: str) -> List[str]:
  """The CSV files at `path` (`limaml_keras.raw_data_checks.list_csv_files`, without its note).

  Raises:
    FileNotFoundError: when `path` does not exist or holds no CSV file.
  """
  return raw_data_checks.list_csv_files(path)[0]


def is_split_root(path: str) -> bool:
  """Whether `path` is a directory with `train/` and `eval/` subdirectories."""
  return all(os.path.isdir(os.path.join(path, d)) for d in (TRAIN_DIR, EVAL_DIR))


def _kept_rows(reader: raw_data_checks.RawCsvReader, files: Sequence[str]
               ) -> Iterator[Tuple[int, List[str]]]:
  for path in files:
    yield from reader.rows(path)


def validate_csv(path: str, spec: schema.FeatureSpec, as_of: Optional[int] = None
                 ) -> raw_data_checks.CheckReport:
  """Checks one raw-schema CSV by the rules of `limaml_keras.raw_data_checks`.

  Args:
    path: the CSV file.
    spec: its feature spec.
    as_of: later interactions are dropped (default: now).

  Returns:
    What was kept and dropped.

  Raises:
    ValueError: naming the file, line, column and bad value.
  """
  reader = raw_data_checks.RawCsvReader(spec, as_of)
  for _ in reader.rows(path):
    pass
  return reader.report


class _StagedCsvWriter:
  """Writes a CSV into a staging directory; `commit` moves it into place.

  An identical existing file is left untouched: ExampleGen fingerprints its
  input by size and modification time, so a rerun reuses cached components.
  """

  def __init__(self, staging_dir: str, path: str, header: Sequence[str]):
    self._path = path
    self._staged = os.path.join(staging_dir, os.path.basename(os.path.dirname(path)) + ".csv")
    self._file = open(self._staged, "w", newline="", encoding="utf-8")
    self._writer = csv.writer(self._file, lineterminator="\n")
    self._writer.writerow(header)
    self.num_rows = 0

  def write(self, row: Sequence[str]) -> None:
    self._writer.writerow(row)
    self.num_rows += 1

  def close(self) -> None:
    self._file.close()

  def commit(self) -> None:
    os.makedirs(os.path.dirname(self._path), exist_ok=True)
    if os.path.exists(self._path) and filecmp.cmp(self._path, self._staged, shallow=False):
      os.remove(self._staged)
    else:
      os.replace(self._staged, self._path)


def _write_data_root(output_dir: str, spec: schema.FeatureSpec,
                     rows: Iterable[Tuple[str, List[str]]]) -> Dict[str, int]:
  """Writes `(split directory, row)` pairs as `<output_dir>/<split>/interactions.csv`.

  Both files are written completely in `<output_dir>/.staging/` first and only
  then moved into place, so a run that fails while reading leaves the
  previous data root as it was, and consumers (ExampleGen reads
  `train/*` and `eval/*`) never see a partial file.

  Returns:
    Rows written per split directory.
  """
  staging_dir = os.path.join(output_dir, _STAGING_DIR)
  shutil.rmtree(staging_dir, ignore_errors=True)  # Left over by a killed run.
  os.makedirs(staging_dir)
  writers = {d: _StagedCsvWriter(staging_dir, os.path.join(output_dir, d, _SPLIT_FILE_NAME),
                                 spec.all_columns()) for d in (TRAIN_DIR, EVAL_DIR)}
  try:
    for directory, row in rows:
      writers[directory].write(row)
  finally:
    for writer in writers.values():
      writer.close()
    if sys.exc_info()[0] is not None:
      shutil.rmtree(staging_dir)
  for writer in writers.values():
    writer.commit()
  shutil.rmtree(staging_dir)
  return {d: writer.num_rows for d, writer in writers.items()}


def _summary(output_dir: str, counts: Mapping[str, int], cutoff: Optional[int],
             report: raw_data_checks.CheckReport, listing_notes: Sequence[Optional[str]]
             ) -> DataSummary:
  for directory in (TRAIN_DIR, EVAL_DIR):
    if not counts[directory]:
      raise ValueError(f"no interaction left for {directory}/ after the checks "
                       f"(dropped: {report.dropped or 'none'})")
  return DataSummary(data_root=output_dir, num_train=counts[TRAIN_DIR],
                     num_eval=counts[EVAL_DIR], cutoff_timestamp=cutoff,
                     dropped=dict(sorted(report.dropped.items())),
                     notes=tuple(n for n in listing_notes if n) + tuple(report.notes()))


def split_by_time(files: Sequence[str], spec: schema.FeatureSpec, output_dir: str,
                  eval_fraction: float, as_of: Optional[int] = None,
                  listing_notes: Sequence[Optional[str]] = ()) -> DataSummary:
  """Checks `files` and writes their kept rows, cut at a time quantile, as a data root.

  Args:
    files: raw-schema CSV files (each may order its columns differently).
    spec: their feature spec.
    output_dir: the data root to write (`train/` and `eval/` inside).
    eval_fraction: approximate share of interactions, the latest, in the
      evaluation period.
    as_of: later interactions are dropped (default: now).
    listing_notes: notes on how `files` were found, put first in the summary.

  Returns:
    The summary.
  """
  as_of = int(time.time()) if as_of is None else int(as_of)
  first_pass = raw_data_checks.RawCsvReader(spec, as_of)
  timestamps = np.fromiter((t for t, _ in _kept_rows(first_pass, files)), np.int64)
  if not timestamps.size:
    raise ValueError(f"no interaction left after the checks (dropped: {first_pass.report.dropped})")
  cutoff = task_settings.cutoff_time(timestamps, eval_fraction)
  second_pass = raw_data_checks.RawCsvReader(spec, as_of)
  counts = _write_data_root(output_dir, spec, (
      (TRAIN_DIR if timestamp < cutoff else EVAL_DIR, row)
      for timestamp, row in _kept_rows(second_pass, files)))
  return _summary(output_dir, counts, cutoff, second_pass.report, listing_notes)


def copy_split_root(data_root: str, spec: schema.FeatureSpec, output_dir: str,
                    as_of: Optional[int] = None) -> DataSummary:
  """Checks a data root already split into `train/` and `eval/` and writes its kept rows.

  The same checks and fallbacks as `split_by_time` apply (duplicates are
  found across both splits), so `output_dir` gets the same layout.
  """
  reader = raw_data_checks.RawCsvReader(spec, as_of)
  listings = {d: raw_data_checks.list_csv_files(os.path.join(data_root, d))
              for d in (TRAIN_DIR, EVAL_DIR)}
  counts = _write_data_root(output_dir, spec, (
      (directory, row) for directory in (TRAIN_DIR, EVAL_DIR)
      for _, row in _kept_rows(reader, listings[directory][0])))
  return _summary(output_dir, counts, None, reader.report,
                  [note for _, note in listings.values()])


def prepare_data_root(data_path: str, spec: schema.FeatureSpec, output_dir: str,
                      eval_fraction: float, as_of: Optional[int] = None) -> DataSummary:
  """Checks `data_path` and writes it as a data root in `output_dir`, split by time.

  Args:
    data_path: a CSV file, a directory of CSV files (`*.csv`, `*.csv.gz`;
      what was read and skipped is in the notes), or a data root that is
      already split (`train/` and `eval/` subdirectories, kept as split).
    spec: the feature spec of the files.
    output_dir: the data root to write.
    eval_fraction: see `split_by_time` (unused for a split root).
    as_of: interactions later than this Unix second are dropped (default:
      now); pass it to make reruns reproducible.

  Returns:
    The summary, with the dropped rows and the notes of the fallbacks taken.

  Raises:
    ValueError: on bad input (see `limaml_keras.raw_data_checks`).
    FileNotFoundError: when `data_path` holds no CSV.
  """
  if os.path.isdir(data_path) and is_split_root(data_path):
    return copy_split_root(data_path, spec, output_dir, as_of)
  files, note = raw_data_checks.list_csv_files(data_path)
  return split_by_time(files, spec, output_dir, eval_fraction, as_of, [note])
