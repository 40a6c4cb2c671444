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
"""

import dataclasses
from typing import Tuple

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
