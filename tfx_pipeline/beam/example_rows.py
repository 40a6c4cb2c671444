"""Table rows -> serialized `tf.train.Example`s, all rows at once with numpy.

`encode` gives, row for row, the bytes of
`tf.train.Example.SerializeToString(deterministic=True)` (features in key
order, so reruns are byte-identical) without building a message per row: it
writes the protobuf wire format for the whole table as a few numpy operations
per column, so the cost per row is a small fraction of building the message
(or of encoding it field by field in Python).

A column is `(kind, values)` with one value per row:

* `BYTES`: a sequence of `bytes` (a one-element `bytes_list`);
* `FLOAT`: a float array `[rows, d]` (a `float_list` of `d` values);
* `INT64`: an integer array `[rows]` (a one-element `int64_list`).
"""

from typing import List, Mapping, Sequence, Tuple

import numpy as np

#: `tf.train.Feature` kinds (their field numbers in the `Feature` oneof).
BYTES, FLOAT, INT64 = 1, 2, 3

_MAX_VARINT_BYTES = 10
_LENGTH_DELIMITED = 2  # Wire type of strings, messages and packed lists.

# Bytes of every row's part of a message: `(values, lengths)`, where `lengths`
# is an int when every row's part has that length (then `values` is a `bytes`
# when every row's part is the same, else a `uint8` array `[rows * lengths]`)
# or an int64 array `[rows]` (then `values` is the rows' parts concatenated).
_Part = Tuple[object, object]


def _varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negatives.
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _varints(values: np.ndarray) -> _Part:
  """Protobuf varints of int64 values, one per row."""
  unsigned = np.asarray(values, np.int64).astype(np.uint64)
  width = len(_varint(int(unsigned.max()))) if len(unsigned) else 1
  if (unsigned >> np.uint64(7 * (width - 1))).all():  # All `width` bytes long.
    lengths = width
  else:
    lengths = np.ones(len(unsigned), np.int64)
    for i in range(1, width):
      lengths += (unsigned >> np.uint64(7 * i)) != 0
  groups = unsigned[:, None] >> (np.uint64(7) * np.arange(width, dtype=np.uint64))
  more = np.arange(width) < np.reshape(lengths, (-1, 1)) - 1  # Continuation bits.
  encoded = (groups & np.uint64(0x7F)).astype(np.uint8) | (more.astype(np.uint8) << 7)
  if isinstance(lengths, int):
    return encoded.reshape(-1), lengths
  return encoded[np.arange(width) < lengths[:, None]], lengths


def _total(parts: Sequence[_Part]):
  total = 0
  for _, lengths in parts:
    total = total + lengths
  return total


def _delimited(field: int, parts: Sequence[_Part], rows: int) -> List[_Part]:
  """A length-delimited field holding the concatenation of `parts`, per row."""
  total = _total(parts)
  if isinstance(total, int):
    header = bytes([field << 3 | _LENGTH_DELIMITED]) + _varint(total)
    return [(header, len(header)), *parts]
  tag = bytes([field << 3 | _LENGTH_DELIMITED])
  return [(tag, 1), _varints(total), *parts]


def _value_list(kind: int, values, rows: int) -> List[_Part]:
  """The `*_list` message of one feature: its field 1 (`value`, packed for numbers)."""
  if kind == BYTES:
    values = list(values)
    lengths = np.fromiter(map(len, values), np.int64, rows)
    if values.count(values[0]) == rows:
      return _delimited(1, [(values[0], len(values[0]))], rows)  # One value in every row.
    return _delimited(1, [(np.frombuffer(b"".join(values), np.uint8), lengths)], rows)
  if kind == FLOAT:
    floats = np.ascontiguousarray(values, "<f4").reshape(rows, -1)
    if not floats.shape[1]:
      return []  # Protobuf omits an empty packed list.
    return _delimited(1, [(floats.view(np.uint8).reshape(-1), floats.shape[1] * 4)], rows)
  if kind == INT64:
    return _delimited(1, [_varints(values)], rows)
  raise ValueError(f"unknown feature kind {kind!r} (use BYTES, FLOAT or INT64)")


def _merged(parts: Sequence[_Part]) -> List[_Part]:
  """Adjacent parts that are the same in every row, joined."""
  out = []
  for part in parts:
    if out and isinstance(part[0], bytes) and isinstance(out[-1][0], bytes):
      out[-1] = (out[-1][0] + part[0], out[-1][1] + part[1])
    else:
      out.append(part)
  return out


def _join(parts: Sequence[_Part], rows: int) -> List[bytes]:
  """Concatenates the parts row by row: one `bytes` per row.

  Rows whose parts have the same lengths have the same layout; each such group
  is assembled as one `[rows, length]` byte matrix, a column block per part.
  """
  parts = _merged(parts)
  ragged = [lengths for _, lengths in parts if not isinstance(lengths, int)]
  offsets = [None if isinstance(lengths, int) else np.cumsum(lengths) - lengths
             for _, lengths in parts]
  layout = np.zeros(rows, np.int64)  # Numbers the distinct combinations of ragged lengths.
  for lengths in ragged:
    distinct, code = np.unique(lengths, return_inverse=True)
    layout = np.unique(layout * len(distinct) + code, return_inverse=True)[1]
  order = np.argsort(layout, kind="stable")
  groups = np.split(order, np.flatnonzero(np.diff(layout[order])) + 1)
  out = [b""] * rows
  for members in groups:
    widths = [lengths if isinstance(lengths, int) else int(lengths[members[0]])
              for _, lengths in parts]
    matrix = np.empty((len(members), sum(widths)), np.uint8)
    column = 0
    for (values, lengths), offset, width in zip(parts, offsets, widths):
      if isinstance(values, bytes):
        block = np.frombuffer(values, np.uint8)
      elif offset is None:
        block = values.reshape(rows, width)[members]
      else:
        block = values[offset[members][:, None] + np.arange(width)]
      matrix[:, column:column + width] = block
      column += width
    blob = matrix.tobytes()
    for i, row in enumerate(members.tolist()):
      out[row] = blob[i * column:(i + 1) * column]
  return out


def encode(columns: Mapping[str, Tuple[int, object]], rows: int) -> List[bytes]:
  """Serialized `tf.train.Example`s, one per row, of `{feature name: (kind, values)}`.

  Args:
    columns: the features; every column holds `rows` values (see the module
      docstring for the kinds).
    rows: the number of rows.

  Returns:
    `rows` serialized examples, each equal to
    `SerializeToString(deterministic=True)` of the row's `tf.train.Example`.

  Raises:
    ValueError: a column of an unknown kind.
  """
  if not rows:
    return []
  entries = []
  for name in sorted(columns):
    kind, values = columns[name]
    feature = _delimited(kind, _value_list(kind, values, rows), rows)
    # A `Features.feature` map entry: key (field 1) and value (field 2).
    key = name.encode()
    entry = _delimited(1, [(key, len(key))], rows) + _delimited(2, feature, rows)
    entries.extend(_delimited(1, entry, rows))
  return _join(_delimited(1, entries, rows), rows)
