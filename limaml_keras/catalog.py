"""Raw member and item features for serving requests, from an interactions CSV or rows.

A ranking request needs the raw columns the model was trained on (the CSV
schema of `limaml_keras.schema`): for the member `member_id` plus the member
and context features, for each candidate `item_id` plus the item features. A
`Catalog` holds, per member and per item, the columns of their **latest**
interaction (by `timestamp`), so a request describes the member as they were
last seen; context features come with the member (their latest context).

**Unknown members** (not in the data) get the typical values of the data:
the median of each numeric member/context column and the most frequent value
of each categorical one, under their own `member_id`. The model does not find
them in its member table and scores them on its cold-start path (the
un-adapted Meta Block). **Unknown items** are an error naming them: an item's
features cannot be guessed.

The raw type of each column (what `tf.io.parse_example` expects) comes from the
model's Transform output when one is at hand (`feature_spec=`); from a CSV
alone it is inferred as `CsvExampleGen` infers it: INT when every value is an
integer, FLOAT when every value is a number, otherwise STRING.

Example:

```python
catalog = load_catalog("outputs/pipeline/input/interactions.csv")
member, known = catalog.member("m00012")
examples = requests.serialized_examples(member, catalog.items(["i0001", "i0002"]),
                                        catalog.feature_spec)
```
"""

import collections
import dataclasses
import logging
import os
import statistics
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from limaml_keras import raw_data_checks
from limaml_keras import schema

_MEMBER = schema.MEMBER_ID_COLUMN
_ITEM = schema.ITEM_ID_COLUMN
_TIME = schema.TIMESTAMP_COLUMN


#: Prefix of the made-up member id `Catalog.unknown_member_id` returns (string ids).
COLD_START_MEMBER = "__cold_start__"


class UnknownItemError(ValueError):
  """Candidate items that are not in the catalog."""


def _member_columns(spec: schema.FeatureSpec) -> Tuple[str, ...]:
  return spec.member_numeric + spec.member_categorical + spec.context_numeric + \
      spec.context_categorical


def _item_columns(spec: schema.FeatureSpec) -> Tuple[str, ...]:
  return spec.item_numeric + spec.item_categorical


def _is_int(text: str) -> bool:
  try:
    int(text)
  except ValueError:
    return False
  return True


def _is_float(text: str) -> bool:
  try:
    float(text)
  except ValueError:
    return False
  return True


def infer_feature_spec(rows: Sequence[Mapping[str, Any]],
                       columns: Sequence[str]) -> Dict[str, tf.io.FixedLenFeature]:
  """The raw serving feature spec of `columns`, typed as `CsvExampleGen` types CSV columns.

  Args:
    rows: raw rows (CSV text or Python values).
    columns: the columns to type.

  Returns:
    column -> `FixedLenFeature([1], int64 | float32 | string)`.
  """
  spec = {}
  for column in columns:
    values = [str(row[column]) for row in rows if str(row[column]) != ""]
    if values and all(_is_int(v) for v in values):
      dtype = tf.int64
    elif values and all(_is_float(v) for v in values):
      dtype = tf.float32
    else:
      dtype = tf.string
    spec[column] = tf.io.FixedLenFeature([1], dtype)
  return spec


def _plain(value: Any) -> Any:
  """Bytes as text (tf.Example and TFRecord sources give bytes); other values unchanged."""
  return value.decode("utf-8") if isinstance(value, bytes) else value


def _typical(values: List[Any], feature: tf.io.FixedLenFeature) -> Any:
  """Median of a numeric column (rounded for INT), most frequent value otherwise."""
  if feature.dtype == tf.string:
    return collections.Counter(str(v) for v in values).most_common(1)[0][0]
  median = statistics.median(float(v) for v in values)
  return int(round(median)) if feature.dtype.is_integer else median


@dataclasses.dataclass(frozen=True)
class Catalog:
  """Latest raw features per member and per item (module docstring).

  Attributes:
    spec: which columns feed which side of the model.
    feature_spec: the raw serving feature spec (no label, no timestamp).
    member_features: member id -> raw member and context columns (with `member_id`).
    item_features: item id -> raw item columns (with `item_id`).
    default_member: typical member and context columns, for unknown members.
    item_counts: item id -> number of interactions.
    member_counts: member id -> number of interactions.
  """
  spec: schema.FeatureSpec
  feature_spec: Mapping[str, tf.io.FixedLenFeature]
  member_features: Mapping[str, Mapping[str, Any]]
  item_features: Mapping[str, Mapping[str, Any]]
  default_member: Mapping[str, Any]
  item_counts: Mapping[str, int]
  member_counts: Mapping[str, int]

  @classmethod
  def from_rows(cls, rows: Iterable[Mapping[str, Any]], spec: schema.FeatureSpec,
                feature_spec: Optional[Mapping[str, tf.io.FixedLenFeature]] = None,
                source: str = "rows") -> "Catalog":
    """Builds the catalog of raw interaction rows.

    Args:
      rows: dicts of the raw columns (`spec.all_columns()`; `label` unused).
      spec: the feature spec of the data.
      feature_spec: the raw serving feature spec; inferred from the rows when None.
      source: named in errors (for example the CSV path).

    Raises:
      ValueError: when there are no rows, a row lacks a column, or a
        timestamp is not an integer.
    """
    rows = [{k: _plain(v) for k, v in row.items()} for row in rows]
    if not rows:
      raise ValueError(f"{source}: no interactions")
    needed = (_MEMBER, _ITEM, _TIME) + spec.feature_columns()
    for number, row in enumerate(rows, start=1):
      missing = [c for c in needed if c not in row]
      if missing:
        raise ValueError(f"{source}: row {number} lacks columns {missing}")
    served = (_MEMBER, _ITEM) + spec.feature_columns()
    if feature_spec is None:
      feature_spec = infer_feature_spec(rows, served)
    missing = [c for c in served if c not in feature_spec]
    if missing:
      raise ValueError(f"feature_spec lacks columns {missing}")

    def timestamp(number_row):
      number, row = number_row
      try:
        return int(row[_TIME])
      except (TypeError, ValueError):
        raise ValueError(f"{source}: row {number}: timestamp {row[_TIME]!r} is not an "
                         "integer") from None

    ordered = [row for _, row in sorted(enumerate(rows, start=1), key=timestamp)]
    member_columns = (_MEMBER,) + _member_columns(spec)
    item_columns = (_ITEM,) + _item_columns(spec)
    members = {str(row[_MEMBER]): {c: row[c] for c in member_columns} for row in ordered}
    items = {str(row[_ITEM]): {c: row[c] for c in item_columns} for row in ordered}
    default = {c: _typical([m[c] for m in members.values()], feature_spec[c])
               for c in _member_columns(spec)}
    item_counts = collections.Counter(str(row[_ITEM]) for row in rows)
    member_counts = collections.Counter(str(row[_MEMBER]) for row in rows)
    return cls(spec, dict(feature_spec), members, items, default, dict(item_counts),
               dict(member_counts))

  def member(self, member_id: str) -> Tuple[Dict[str, Any], bool]:
    """`(raw member columns, known)`: the latest features, or the typical ones if unknown."""
    member_id = str(member_id)
    if not member_id:
      raise ValueError("member id must not be empty")
    known = self.member_features.get(member_id)
    if known is not None:
      return dict(known), True
    return {_MEMBER: member_id, **self.default_member}, False

  def unknown_member_id(self) -> str:
    """A member id not in the catalog, of the member id column's type (for cold-start requests)."""
    if self.feature_spec[_MEMBER].dtype.is_integer:
      return str(max(int(m) for m in self.member_features) + 1)
    candidate = COLD_START_MEMBER
    while candidate in self.member_features:
      candidate += "_"
    return candidate

  def items(self, item_ids: Sequence[str]) -> List[Dict[str, Any]]:
    """The raw columns of each item, in order.

    Raises:
      UnknownItemError: naming the items not in the catalog.
    """
    unknown = [i for i in item_ids if str(i) not in self.item_features]
    if unknown:
      raise UnknownItemError(f"unknown items {unknown[:10]}"
                             f"{f' and {len(unknown) - 10} more' if len(unknown) > 10 else ''}; "
                             f"the catalog has {len(self.item_features)} items, for example "
                             f"{sorted(self.item_features)[:3]}")
    return [dict(self.item_features[str(i)]) for i in item_ids]

  def popular_items(self, count: int) -> List[str]:
    """The `count` item ids with the most interactions (ties by id)."""
    return _most_frequent(self.item_counts, count)

  def active_members(self, count: int) -> List[str]:
    """The `count` member ids with the most interactions (ties by id)."""
    return _most_frequent(self.member_counts, count)


def _most_frequent(counts: Mapping[str, int], count: int) -> List[str]:
  return sorted(counts, key=lambda key: (-counts[key], key))[:count]


def rows_from_examples(serialized: Iterable[bytes]) -> List[Dict[str, Any]]:
  """Raw rows of serialized raw `tf.Example`s (for example ExampleGen's output records).

  Each feature's first value becomes the column's value (bytes as text); a
  feature without values is left out, so `Catalog.from_rows` names the row.
  """
  rows = []
  for number, record in enumerate(serialized):
    try:
      example = tf.train.Example.FromString(record)
    except Exception as e:  # pylint: disable=broad-except  (protobuf's DecodeError)
      raise ValueError(f"record {number} is not a tf.Example: {e}") from None
    row = {}
    for name, feature in example.features.feature.items():
      values = getattr(feature, feature.WhichOneof("kind")).value if feature.WhichOneof(
          "kind") else []
      if values:
        row[name] = _plain(values[0])
    rows.append(row)
  return rows


def read_csv_rows(path: str, spec: schema.FeatureSpec) -> List[Dict[str, str]]:
  """The kept rows of a raw interactions CSV as dicts of text (`spec.all_columns()`).

  Read by the rules of `limaml_keras.raw_data_checks` (bad values are a
  `ValueError` naming file, line and column; duplicate and future rows are
  dropped and ids stripped, with the notes logged as warnings).
  """
  reader = raw_data_checks.RawCsvReader(spec)
  columns = spec.all_columns()
  rows = [dict(zip(columns, row)) for _, row in reader.rows(path)]
  for note in reader.report.notes():
    logging.warning("%s", note)
  return rows


def load_catalog(csv_path: str, spec_path: Optional[str] = None,
                 feature_spec: Optional[Mapping[str, tf.io.FixedLenFeature]] = None) -> Catalog:
  """Reads a raw interactions CSV and its `features.json` into a `Catalog`.

  Args:
    csv_path: the raw interactions CSV (the schema of `limaml_keras.schema`).
    spec_path: its feature spec; default `features.json` beside the CSV.
    feature_spec: the raw serving feature spec; inferred from the CSV when None.

  Raises:
    FileNotFoundError: when the CSV or the spec does not exist.
    ValueError: bad rows or a header lacking a column of the spec
      (`limaml_keras.raw_data_checks`).
  """
  if not os.path.isfile(csv_path):
    raise FileNotFoundError(f"no such interactions CSV: {csv_path}")
  spec = schema.load_spec(spec_path or schema.find_spec_file(csv_path))
  rows = read_csv_rows(csv_path, spec)
  return Catalog.from_rows(rows, spec, feature_spec, source=csv_path)
