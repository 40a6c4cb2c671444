"""Pandas/numpy preprocessing of raw interactions, with the TFX Transform's semantics.

`Preprocessor` learns, on the training period only,

* z-score statistics of every numeric feature (population std; a constant
  column is only centred, like `tft.scale_to_z_score`),
* a vocabulary of every categorical feature, one-hot encoded as the
  vocabulary followed by `oov_buckets` out-of-vocabulary slots (missing
  values go to the first),
* vocabularies of `member_id` and `item_id`, indexed 1..n with 0 for unknown
  (the convention of `limaml_keras.tensor_layout`),

with the semantics of the pipeline's `preprocessing_fn`
(`tfx_pipeline.models.preprocessing`, `tft.compute_and_apply_vocabulary`):
vocabularies are ordered by decreasing frequency, ties in reverse
lexicographic order of the UTF-8 bytes; empty values and values containing
a newline are left out of vocabularies (TFT writes vocabularies as text
files) and encode as out-of-vocabulary; the out-of-vocabulary slots come
after the vocabulary. With one OOV slot (the pipeline's) the two paths give
identical ids and one-hots, which `tests/tfx_pipeline/models/
preprocessing_parity_test.py` checks by running both; with several, unknown
values are spread by CRC-32 here, by TF's fingerprint hash in TFT.

and turns a raw-schema frame (`limaml_keras.schema`) into the per-interaction
arrays that `limaml_keras.tasks.build_tasks` groups into tasks. Raw frames are
validated at this boundary: every problem raises a `ValueError` that names
the column and a sample bad row.
"""

import dataclasses
import json
import logging
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from limaml_keras import tensor_layout
from limaml_keras import raw_data_checks
from limaml_keras import schema

#: Output keys of the raw member id (str) and int64 Unix seconds
#: (`limaml_keras.tensor_layout`).
MEMBER_KEY = tensor_layout.MEMBER_KEY
TIMESTAMP = tensor_layout.TIMESTAMP

_OOV_NAME = "<oov>"
#: Version of the encoding `get_config` records (frequency-ordered vocabularies, OOV last).
ENCODING = "tft-vocabulary-v1"


def _sample_row(df: pd.DataFrame, bad: np.ndarray) -> str:
  """Describes the first row flagged in boolean array `bad`."""
  position = int(np.flatnonzero(bad)[0])
  return f"{int(bad.sum())} row(s), e.g. row {df.index[position]!r}"


def _check_frame(df: pd.DataFrame, required: Sequence[str]) -> None:
  """Raises ValueError if `df` is not a non-empty frame with `required` columns."""
  if not isinstance(df, pd.DataFrame):
    raise ValueError(f"expected a pandas DataFrame, got {type(df).__name__}")
  missing = [c for c in required if c not in df.columns]
  if missing:
    raise ValueError(f"missing columns: {missing}")
  if df.empty:
    raise ValueError("the interaction frame is empty (0 rows)")


def _numeric(df: pd.DataFrame, column: str) -> np.ndarray:
  """Returns column `column` as finite float64, or raises ValueError."""
  series = df[column]
  values = pd.to_numeric(series, errors="coerce").to_numpy(np.float64)
  non_numeric = np.isnan(values) & series.notna().to_numpy()
  if non_numeric.any():
    sample = series.iloc[int(np.flatnonzero(non_numeric)[0])]
    raise ValueError(f"column {column!r} has non-numeric values ({sample!r} in "
                     f"{_sample_row(df, non_numeric)})")
  not_finite = ~np.isfinite(values)
  if not_finite.any():
    raise ValueError(f"column {column!r} has NaN or infinite values in "
                     f"{_sample_row(df, not_finite)}")
  return values


def _label(df: pd.DataFrame) -> np.ndarray:
  """Returns the label column as float32 in {0, 1}, or raises ValueError."""
  values = _numeric(df, schema.LABEL_COLUMN)
  not_binary = (values != 0) & (values != 1)
  if not_binary.any():
    sample = values[int(np.flatnonzero(not_binary)[0])]
    raise ValueError(f"column {schema.LABEL_COLUMN!r} must be 0 or 1, got {sample!r} in "
                     f"{_sample_row(df, not_binary)}")
  return values.astype(np.float32)


def _timestamp(df: pd.DataFrame) -> np.ndarray:
  """Returns the timestamp column as int64 seconds, or raises ValueError."""
  values = _numeric(df, schema.TIMESTAMP_COLUMN)
  fractional = values != np.floor(values)
  if fractional.any():
    raise ValueError(f"column {schema.TIMESTAMP_COLUMN!r} must hold whole Unix seconds, "
                     f"got fractions in {_sample_row(df, fractional)}")
  return values.astype(np.int64)


def _strings(df: pd.DataFrame, column: str, allow_missing: bool) -> np.ndarray:
  """Returns `column` as an object array of str (None where missing)."""
  series = df[column]
  missing = series.isna().to_numpy()
  if missing.any() and not allow_missing:
    raise ValueError(f"column {column!r} has missing values in {_sample_row(df, missing)}")
  values = series.astype(str).to_numpy(object)
  values[missing] = None
  return values


def _vocabulary(values: np.ndarray) -> List[str]:
  """Distinct values by decreasing count, ties by reverse UTF-8 order (TFT's order).

  Missing and empty values and values with a newline are left out, as
  `tft.vocabulary` leaves them out of its text vocabulary files.
  """
  counts = pd.Series(values, dtype=object).dropna().value_counts(sort=False)
  kept = [(int(n), v.encode("utf-8"), v) for v, n in counts.items()
          if v and "\n" not in v and "\r" not in v]
  return [v for _, _, v in sorted(kept, reverse=True)]


def _positions(values: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
  """Position of each value in `vocabulary`, -1 for unknown and missing values."""
  return pd.Index(vocabulary, dtype=object).get_indexer(values).astype(np.int64)


def _id_index(values: np.ndarray, vocabulary: Sequence[str]) -> np.ndarray:
  """Ids: 1 + vocabulary position, 0 for unknown (`limaml_keras.tensor_layout`)."""
  return _positions(values, vocabulary) + 1


def _category_index(values: np.ndarray, vocabulary: Sequence[str],
                    oov_buckets: int) -> np.ndarray:
  """One-hot slots: the vocabulary position, else an OOV slot after the vocabulary.

  Unknown values are hashed (CRC-32, stable across processes) into slots
  `len(vocabulary) + 0..oov_buckets-1`; missing values go to the first.
  """
  ids = _positions(values, vocabulary)
  unknown = ids < 0
  ids[unknown] = len(vocabulary)
  if oov_buckets > 1 and unknown.any():
    ids[unknown] += [0 if v is None else zlib.crc32(v.encode("utf-8")) % oov_buckets
                     for v in values[unknown]]
  return ids


def _one_hot(ids: np.ndarray, depth: int) -> np.ndarray:
  out = np.zeros((ids.shape[0], depth), np.float32)
  out[np.arange(ids.shape[0]), ids] = 1.0
  return out


@dataclasses.dataclass
class _State:
  """What `Preprocessor.fit` learns."""
  numeric_stats: Dict[str, List[float]]  # column -> [mean, std]
  vocabularies: Dict[str, List[str]]  # categorical column -> values
  member_vocabulary: List[str]
  item_vocabulary: List[str]


class Preprocessor:
  """Learns normalisation and vocabularies on training data and applies them.

  Example::

    pre = Preprocessor(spec).fit(train_df)
    train = pre.transform(train_df)     # dict of numpy arrays
    test = pre.transform(test_df)       # unseen ids map to 0
    pre.save("model_dir/preprocessor.json")

  `transform` returns, for N interactions::

    member_id          int64   [N]      0 = unknown, known members 1..n
    item_id            int64   [N]      0 = unknown, known items 1..n
    member_features    float32 [N, Dm]  z-scored numeric, then one-hot categorical
    item_features      float32 [N, Di]
    context_features   float32 [N, Dc]  ([N, 0] when the spec has none)
    label              float32 [N]      in {0, 1}
    timestamp          int64   [N]      Unix seconds
    member_key         object  [N]      raw member id (str)

  Within a side, numeric columns come first in spec order, then each
  categorical column as its vocabulary followed by `oov_buckets` OOV slots
  (the layout of the Transform output); `feature_names(side)` names every
  dimension.
  """

  def __init__(self, spec: schema.FeatureSpec, oov_buckets: int = 1):
    """Creates an unfitted preprocessor.

    Args:
      spec: which raw columns feed which side.
      oov_buckets: out-of-vocabulary slots of every categorical feature's
        one-hot encoding (>= 1). Member and item ids always use the single
        index 0 for unknown values, as `limaml_keras.tensor_layout` requires.

    Raises:
      ValueError: if `oov_buckets` < 1.
    """
    if not isinstance(oov_buckets, (int, np.integer)) or oov_buckets < 1:
      raise ValueError(f"oov_buckets must be an integer >= 1, got {oov_buckets!r}")
    self._spec = spec
    self._oov_buckets = int(oov_buckets)
    self._state: Optional[_State] = None

  @property
  def spec(self) -> schema.FeatureSpec:
    return self._spec

  @property
  def oov_buckets(self) -> int:
    return self._oov_buckets

  @property
  def is_fitted(self) -> bool:
    return self._state is not None

  def fit(self, df: pd.DataFrame) -> "Preprocessor":
    """Learns statistics and vocabularies from `df` (and from nothing else).

    Args:
      df: raw-schema interactions with every column of `spec.all_columns()`.

    Returns:
      self.

    Raises:
      ValueError: if `df` is invalid (see the module docstring).
    """
    _check_frame(df, self._spec.all_columns())
    _label(df)
    _timestamp(df)
    stats = {}
    for column in self._spec.numeric_columns():
      values = _numeric(df, column)
      mean, std = float(values.mean()), float(values.std())
      constant = std == 0.0 or std <= 1e-10 * abs(mean)
      stats[column] = [mean, 1.0 if constant else std]
    self._state = _State(
        numeric_stats=stats,
        vocabularies={c: _vocabulary(_strings(df, c, allow_missing=True))
                      for c in self._spec.categorical_columns()},
        member_vocabulary=_vocabulary(_strings(df, schema.MEMBER_ID_COLUMN, False)),
        item_vocabulary=_vocabulary(_strings(df, schema.ITEM_ID_COLUMN, False)),
    )
    return self

  def transform(self, df: pd.DataFrame, inference: bool = False) -> Dict[str, np.ndarray]:
    """Encodes `df` into per-interaction arrays (see the class docstring).

    Args:
      df: raw-schema interactions.
      inference: if True, the `label` and `timestamp` columns may be absent
        (for example in serving requests); they are returned when present.

    Returns:
      A dict of numpy arrays, N rows each.

    Raises:
      RuntimeError: if the preprocessor is not fitted.
      ValueError: if `df` is invalid (see the module docstring).
    """
    state = self._fitted_state()
    optional = (schema.LABEL_COLUMN, schema.TIMESTAMP_COLUMN) if inference else ()
    _check_frame(df, [c for c in self._spec.all_columns() if c not in optional])
    member_key = _strings(df, schema.MEMBER_ID_COLUMN, allow_missing=False)
    out = {
        tensor_layout.MEMBER_ID: _id_index(member_key, state.member_vocabulary),
        tensor_layout.ITEM_ID: _id_index(_strings(df, schema.ITEM_ID_COLUMN, allow_missing=False),
                                         state.item_vocabulary),
        tensor_layout.MEMBER_FEATURES: self._encode_side(df, "member"),
        tensor_layout.ITEM_FEATURES: self._encode_side(df, "item"),
        tensor_layout.CONTEXT_FEATURES: self._encode_side(df, "context"),
    }
    if schema.LABEL_COLUMN in df.columns:
      out[tensor_layout.LABEL] = _label(df)
    if schema.TIMESTAMP_COLUMN in df.columns:
      out[TIMESTAMP] = _timestamp(df)
    out[MEMBER_KEY] = member_key
    return out

  def fit_transform(self, df: pd.DataFrame) -> Dict[str, np.ndarray]:
    """`fit(df)` then `transform(df)`."""
    return self.fit(df).transform(df)

  def _encode_side(self, df: pd.DataFrame, side: str) -> np.ndarray:
    """float32 [N, D] encoding of the numeric and categorical columns of `side`."""
    state = self._fitted_state()
    numeric, categorical = self._spec.side(side)
    parts = [np.zeros((len(df), 0), np.float32)]
    for column in numeric:
      mean, std = state.numeric_stats[column]
      parts.append(((_numeric(df, column) - mean) / std)[:, None].astype(np.float32))
    for column in categorical:
      vocabulary = state.vocabularies[column]
      ids = _category_index(_strings(df, column, allow_missing=True), vocabulary,
                            self._oov_buckets)
      parts.append(_one_hot(ids, self._oov_buckets + len(vocabulary)))
    return np.concatenate(parts, axis=1)

  def _fitted_state(self) -> _State:
    if self._state is None:
      raise RuntimeError("Preprocessor is not fitted; call fit(df) first")
    return self._state

  def feature_names(self, side: str) -> List[str]:
    """Names of the dimensions of the `side` features, e.g. `segment=<oov>`."""
    state = self._fitted_state()
    numeric, categorical = self._spec.side(side)
    names = list(numeric)
    for column in categorical:
      names += [f"{column}={value}" for value in state.vocabularies[column]]
      names += [f"{column}={_OOV_NAME}{j if self._oov_buckets > 1 else ''}"
                for j in range(self._oov_buckets)]
    return names

  @property
  def member_feature_dim(self) -> int:
    return len(self.feature_names("member"))

  @property
  def item_feature_dim(self) -> int:
    return len(self.feature_names("item"))

  @property
  def context_feature_dim(self) -> int:
    return len(self.feature_names("context"))

  @property
  def num_members(self) -> int:
    """Member vocabulary size including the unknown index 0."""
    return len(self._fitted_state().member_vocabulary) + 1

  @property
  def num_items(self) -> int:
    """Item vocabulary size including the unknown index 0."""
    return len(self._fitted_state().item_vocabulary) + 1

  def get_config(self) -> Dict[str, Any]:
    """A JSON-serialisable dict from which `from_config` rebuilds this object."""
    return {
        "encoding": ENCODING,
        "spec": {k: list(v) for k, v in dataclasses.asdict(self._spec).items()},
        "oov_buckets": self._oov_buckets,
        "state": None if self._state is None else dataclasses.asdict(self._state),
    }

  @classmethod
  def from_config(cls, config: Mapping[str, Any]) -> "Preprocessor":
    """Rebuilds a (fitted or unfitted) preprocessor from `get_config()`.

    Raises:
      ValueError: for a config of another encoding (an older version ordered
        vocabularies alphabetically behind the OOV slots): refit it.
    """
    if config.get("encoding") != ENCODING:
      raise ValueError(f"preprocessor config has encoding {config.get('encoding')!r}, this "
                       f"version reads {ENCODING!r} (vocabularies by frequency, OOV slots "
                       f"last); fit the preprocessor again")
    spec = schema.FeatureSpec(**{k: tuple(v) for k, v in config["spec"].items()})
    preprocessor = cls(spec, oov_buckets=config["oov_buckets"])
    if config.get("state") is not None:
      preprocessor._state = _State(**config["state"])  # pylint: disable=protected-access
    return preprocessor

  def save(self, path: str) -> None:
    """Writes `get_config()` as JSON to `path`."""
    with open(path, "w", encoding="utf-8") as f:
      json.dump(self.get_config(), f)

  @classmethod
  def load(cls, path: str) -> "Preprocessor":
    """Reads a preprocessor written by `save`."""
    with open(path, encoding="utf-8") as f:
      return cls.from_config(json.load(f))


def read_raw_csv_frame_with_report(path: Union[str, Sequence[str]], spec: schema.FeatureSpec,
                                   as_of: Optional[int] = None
                                   ) -> Tuple[pd.DataFrame, raw_data_checks.CheckReport]:
  """Reads a raw-schema CSV by the rules of `limaml_keras.raw_data_checks`.

  The same rules as the pipeline's input (`tfx_pipeline.ops.input_data`): bad
  values raise a `ValueError` naming the file, line and column; extra columns
  are left out; duplicate interactions and interactions later than `as_of`
  are dropped and counted in the report.

  Args:
    path: a CSV file with (at least) the columns `spec.all_columns()`, or a
      directory of them (`raw_data_checks.list_csv_files`; its note is the
      report's first), or a sequence of files and directories read as one
      input (duplicates are found across files).
    spec: its feature spec.
    as_of: later interactions are dropped (default: now).

  Returns:
    `(frame, report)`: the frame has the columns `spec.all_columns()`, ids
    and categorical values as str (missing categorical values as None),
    `timestamp` and `label` as int64 and numeric features as float64.
  """
  reader = raw_data_checks.RawCsvReader(spec, as_of)
  paths = [path] if isinstance(path, str) else list(path)
  rows = []
  for one_path in paths:
    files, listing_note = raw_data_checks.list_csv_files(one_path)
    rows.extend(row for file in files for _, row in reader.rows(file))
    if listing_note:
      reader.report.listing_notes.append(listing_note)
  columns = spec.all_columns()
  values = dict(zip(columns, zip(*rows))) if rows else {c: () for c in columns}
  frame = pd.DataFrame({c: _typed_column(c, values[c], spec) for c in columns},
                       columns=list(columns))
  return frame, reader.report


def _typed_column(column: str, values: Sequence[str], spec: schema.FeatureSpec) -> np.ndarray:
  if column in (schema.TIMESTAMP_COLUMN, schema.LABEL_COLUMN):
    return np.asarray([int(v) for v in values], np.int64)
  if column in spec.numeric_columns():
    return np.asarray([float(v) for v in values], np.float64)
  if column in spec.categorical_columns():
    return np.asarray([v if v else None for v in values], object)
  return np.asarray(values, object)


def read_raw_csv_frame(path: str, spec: schema.FeatureSpec, as_of: Optional[int] = None
                       ) -> pd.DataFrame:
  """A raw CSV as a pandas DataFrame: `read_raw_csv_frame_with_report(...)[0]`.

  The report's notes are logged as warnings.
  """
  frame, report = read_raw_csv_frame_with_report(path, spec, as_of)
  for note in report.notes():
    logging.warning("%s", note)
  return frame
