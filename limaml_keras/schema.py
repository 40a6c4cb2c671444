"""The raw interaction schema shared by the CSV files, the pandas path and TFX.

One row of raw data is one interaction::

    member_id   string   who (the task key)
    item_id     string   what
    timestamp   int64    when, Unix seconds; orders support before query
    label       int64    1 = positive engagement, 0 = not
    <features>  float64 or string, as a `FeatureSpec` lists them

Features belong to one of three sides: member (input of the Meta Block),
item and context (inputs of the Global Block). Numeric features are
z-normalised, categorical features are one-hot encoded over a vocabulary
learnt on the training period, with one out-of-vocabulary slot.

A spec file (`features.json` beside the data) is a JSON object with the fields
of `FeatureSpec`, each a list of raw column names; absent fields are empty::

    {"member_numeric": ["age"], "member_categorical": ["gender"],
     "item_numeric": ["year"]}

The pipeline carries the spec as this JSON text (for example in the
Transform component's `custom_config`), so it compiles to any orchestrator.
"""

import dataclasses
import json
import os
from typing import Any, Mapping, Tuple

MEMBER_ID_COLUMN = "member_id"
ITEM_ID_COLUMN = "item_id"
TIMESTAMP_COLUMN = "timestamp"
LABEL_COLUMN = "label"
KEY_COLUMNS = (MEMBER_ID_COLUMN, ITEM_ID_COLUMN, TIMESTAMP_COLUMN, LABEL_COLUMN)


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
  """Which raw columns feed which side of the model, and how.

  Attributes:
    member_numeric: numeric member-side columns.
    member_categorical: categorical member-side columns.
    item_numeric: numeric item-side columns.
    item_categorical: categorical item-side columns.
    context_numeric: numeric context columns.
    context_categorical: categorical context columns.
  """
  member_numeric: Tuple[str, ...] = ()
  member_categorical: Tuple[str, ...] = ()
  item_numeric: Tuple[str, ...] = ()
  item_categorical: Tuple[str, ...] = ()
  context_numeric: Tuple[str, ...] = ()
  context_categorical: Tuple[str, ...] = ()

  def __post_init__(self):
    columns = self.feature_columns()
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
      raise ValueError(f"FeatureSpec lists columns more than once: {duplicated}")
    reserved = sorted(set(columns) & set(KEY_COLUMNS))
    if reserved:
      raise ValueError(f"FeatureSpec uses reserved key columns as features: {reserved}")

  def to_dict(self) -> dict:
    """The spec as a JSON-serialisable dict of lists (the `features.json` format)."""
    return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}

  def feature_columns(self) -> Tuple[str, ...]:
    """All feature columns, member then item then context."""
    return (self.member_numeric + self.member_categorical + self.item_numeric +
            self.item_categorical + self.context_numeric + self.context_categorical)

  def all_columns(self) -> Tuple[str, ...]:
    """Key columns followed by feature columns: the CSV header."""
    return KEY_COLUMNS + self.feature_columns()

  def categorical_columns(self) -> Tuple[str, ...]:
    return self.member_categorical + self.item_categorical + self.context_categorical

  def numeric_columns(self) -> Tuple[str, ...]:
    return self.member_numeric + self.item_numeric + self.context_numeric

  def side(self, name: str) -> Tuple[Tuple[str, ...], Tuple[str, ...]]:
    """Returns `(numeric, categorical)` columns of side `member`, `item` or `context`."""
    if name not in ("member", "item", "context"):
      raise ValueError(f"side must be 'member', 'item' or 'context', got {name!r}")
    return getattr(self, f"{name}_numeric"), getattr(self, f"{name}_categorical")


#: File name looked up next to a data set when no spec is given.
SPEC_FILE_NAME = "features.json"

_FIELDS = tuple(field.name for field in dataclasses.fields(FeatureSpec))


def spec_to_dict(spec: FeatureSpec) -> dict:
  """Returns `spec` as a JSON-serialisable dict of lists."""
  return spec.to_dict()


def spec_from_dict(value: Mapping[str, Any]) -> FeatureSpec:
  """Builds a `FeatureSpec` from a dict such as `spec_to_dict` returns.

  Args:
    value: field name -> list of column names.

  Returns:
    The spec.

  Raises:
    ValueError: on unknown fields, non-list values or non-string names, or
      when `FeatureSpec` rejects the columns.
  """
  if not isinstance(value, Mapping):
    raise ValueError(f"a feature spec must be a JSON object, got {type(value).__name__}")
  unknown = sorted(set(value) - set(_FIELDS))
  if unknown:
    raise ValueError(f"unknown feature spec fields {unknown}; expected some of {list(_FIELDS)}")
  fields = {}
  for name, columns in value.items():
    if not isinstance(columns, (list, tuple)) or not all(isinstance(c, str) for c in columns):
      raise ValueError(f"feature spec field {name!r} must be a list of column names, "
                       f"got {columns!r}")
    fields[name] = tuple(columns)
  return FeatureSpec(**fields)


def spec_to_json(spec: FeatureSpec) -> str:
  """Serialises `spec` to JSON text (stable key order)."""
  return json.dumps(spec_to_dict(spec), sort_keys=True)


def spec_from_json(text: str) -> FeatureSpec:
  """Parses JSON text written by `spec_to_json` (or by hand)."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"feature spec is not valid JSON: {e}") from None
  return spec_from_dict(value)


def save_spec(spec: FeatureSpec, path: str) -> str:
  """Writes `spec` as indented JSON to `path`; returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(spec_to_dict(spec), f, indent=2, sort_keys=True)
    f.write("\n")
  return path


def load_spec(path: str) -> FeatureSpec:
  """Reads a spec file; errors name the file."""
  with open(path, encoding="utf-8") as f:
    text = f.read()
  try:
    return spec_from_json(text)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


def find_spec_file(data_path: str) -> str:
  """Returns the `features.json` that describes `data_path`.

  Looks in `data_path` itself when it is a directory, then in the directory
  that holds it (so both `data/interactions.csv` and a pre-split
  `data/{train,eval}/` find `data/features.json`).

  Raises:
    FileNotFoundError: when there is none.
  """
  path = os.path.abspath(data_path)
  candidates = []
  if os.path.isdir(path):
    candidates.append(os.path.join(path, SPEC_FILE_NAME))
  candidates.append(os.path.join(os.path.dirname(path), SPEC_FILE_NAME))
  for candidate in candidates:
    if os.path.isfile(candidate):
      return candidate
  raise FileNotFoundError(
      f"no feature spec for {data_path}: pass --spec FILE or put {SPEC_FILE_NAME} in "
      f"{' or '.join(dict.fromkeys(os.path.dirname(c) for c in candidates))}")
