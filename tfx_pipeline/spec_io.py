"""`FeatureSpec` <-> JSON, and where a data set's spec is found.

A spec file is a JSON object with the fields of `limaml_keras.schema.FeatureSpec`,
each a list of raw column names; absent fields are empty::

    {"member_numeric": ["age"], "member_categorical": ["gender"],
     "item_numeric": ["year"]}

The pipeline carries the spec as this JSON text (for example in the
Transform component's `custom_config`), so it compiles to any orchestrator.
"""

import dataclasses
import json
import os
from typing import Any, Mapping

from limaml_keras import schema

#: File name looked up next to a data set when no spec is given.
SPEC_FILE_NAME = "features.json"

_FIELDS = tuple(field.name for field in dataclasses.fields(schema.FeatureSpec))


def spec_to_dict(spec: schema.FeatureSpec) -> dict:
  """Returns `spec` as a JSON-serialisable dict of lists."""
  return spec.to_dict()


def spec_from_dict(value: Mapping[str, Any]) -> schema.FeatureSpec:
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
  return schema.FeatureSpec(**fields)


def spec_to_json(spec: schema.FeatureSpec) -> str:
  """Serialises `spec` to JSON text (stable key order)."""
  return json.dumps(spec_to_dict(spec), sort_keys=True)


def spec_from_json(text: str) -> schema.FeatureSpec:
  """Parses JSON text written by `spec_to_json` (or by hand)."""
  try:
    value = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"feature spec is not valid JSON: {e}") from None
  return spec_from_dict(value)


def save_spec(spec: schema.FeatureSpec, path: str) -> str:
  """Writes `spec` as indented JSON to `path`; returns `path`."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    json.dump(spec_to_dict(spec), f, indent=2, sort_keys=True)
    f.write("\n")
  return path


def load_spec(path: str) -> schema.FeatureSpec:
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
