"""`example_rows.encode` against protobuf's own deterministic serialization."""

import numpy as np
import pytest
import tensorflow as tf

from tfx_pipeline.beam import example_rows


def _expected(columns, row):
  example = tf.train.Example()
  for name, (kind, values) in columns.items():
    feature = example.features.feature[name]
    if kind == example_rows.BYTES:
      feature.bytes_list.value.append(values[row])
    elif kind == example_rows.FLOAT:
      feature.float_list.value.extend(values[row])
    else:
      feature.int64_list.value.append(int(values[row]))
  return example.SerializeToString(deterministic=True)


@pytest.mark.parametrize("dim", [0, 3, 40])  # 40 floats: a list longer than 127 bytes.
def test_every_row_is_the_deterministic_serialization(dim):
  rng = np.random.default_rng(dim)
  rows = 300
  ids = [b"m" * int(rng.integers(0, 200)) + str(i).encode() for i in range(rows)]
  ids[0] = b""  # An empty value is still written.
  wide = rng.integers(-2**63, 2**63 - 1, rows, dtype=np.int64)
  wide[:6] = [0, 1, 127, 128, -1, 2**63 - 1]  # Varint edges; negatives take 10 bytes.
  columns = {
      "member_id": (example_rows.BYTES, ids),
      "embedding": (example_rows.FLOAT, rng.normal(size=(rows, dim)).astype(np.float32)),
      "as_of": (example_rows.INT64, wide),
      "size": (example_rows.INT64, np.arange(rows) % 300),  # One and two varint bytes.
      "version": (example_rows.BYTES, ["é".encode()] * rows),  # The same in every row.
  }
  encoded = example_rows.encode(columns, rows)
  assert len(encoded) == rows
  for row in range(rows):
    assert encoded[row] == _expected(columns, row), row


def test_rows_of_one_layout_and_no_rows():
  columns = {"a": (example_rows.INT64, np.array([5, 6])),
             "b": (example_rows.FLOAT, np.ones([2, 2], np.float32))}
  assert example_rows.encode(columns, 2) == [_expected(columns, 0), _expected(columns, 1)]
  assert example_rows.encode({"a": (example_rows.INT64, np.zeros([0], np.int64))}, 0) == []


def test_an_unknown_kind_is_refused():
  with pytest.raises(ValueError, match="unknown feature kind 7"):
    example_rows.encode({"a": (7, [b"x"])}, 1)
