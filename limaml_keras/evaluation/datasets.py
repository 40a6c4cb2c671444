"""The data `limaml evaluate` reads: the built-in datasets, or the user's raw-schema CSVs."""

import os
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from limaml_keras import schema

if TYPE_CHECKING:  # pandas loads with the data, not with `limaml --help`.
  import pandas as pd

DATASETS = ("synthetic", "movielens-100k")


def load(name: str, data_dir: Optional[str] = None, seed: int = 0
         ) -> Tuple["pd.DataFrame", schema.FeatureSpec]:
  """Returns `(interactions, spec)` of a named dataset.

  Args:
    name: `synthetic` (generated, seeded; `data_dir` unused) or
      `movielens-100k` (`data_dir` holds the GroupLens `u.data`/`u.user`/
      `u.item` files or the RecBole `ml-100k.*` atomic files).
    data_dir: where the dataset's files are.
    seed: data seed of the synthetic generator.

  Raises:
    ValueError: unknown name, or a missing `data_dir` for MovieLens.
  """
  if name == "synthetic":
    from limaml_keras import synthetic  # pylint: disable=g-import-not-at-top
    data = synthetic.generate(seed=seed)
    return data.interactions, data.spec
  if name == "movielens-100k":
    if not data_dir:
      raise ValueError("--data-dir is required for movielens-100k: a directory with u.data, u.user "
                       "and u.item (GroupLens) or ml-100k.inter/.user/.item (RecBole)")
    if not os.path.isdir(data_dir):
      raise ValueError(f"--data-dir {data_dir!r} is not a directory")
    from limaml_keras.datasets import movielens  # pylint: disable=g-import-not-at-top
    data = movielens.load_movielens(data_dir)
    return data.frame, data.spec
  raise ValueError(f"unknown dataset {name!r}; choose from {list(DATASETS)}")


def load_csv(files: Sequence[str], spec: schema.FeatureSpec, as_of: Optional[int] = None
             ) -> Tuple["pd.DataFrame", List[str]]:
  """Reads raw-schema CSVs by the pipeline's rules (`limaml_keras.raw_data_checks`).

  Args:
    files: the CSV files, read as one input.
    spec: their feature spec.
    as_of: later interactions are dropped (default: now).

  Returns:
    `(interactions, notes)`: the notes name every fallback taken (ignored
    extra columns, dropped duplicate or future interactions).

  Raises:
    ValueError: on bad input, naming the file, line, column and value.
  """
  from limaml_keras import preprocessing  # pylint: disable=g-import-not-at-top
  if not files:
    raise ValueError("no CSV file to read")
  frame, report = preprocessing.read_raw_csv_frame_with_report(list(files), spec, as_of)
  return frame, report.notes()
