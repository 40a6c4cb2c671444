"""Tensor conversions of the TF Serving APIs: `TensorProto` <-> numpy, JSON <-> numpy.

Shared by the dev server and the client. Every function that reads outside
input raises `TensorError` (a `ValueError`) with a message naming the tensor
and the problem; servers answer it with `INVALID_ARGUMENT` / HTTP 400.

JSON follows TF Serving's RESTful API:

* binary strings are `{"b64": "<base64>"}`; text strings are plain JSON
  strings (UTF-8). Output tensors whose name ends in `_bytes` are always
  base64-encoded, others only when they are not valid UTF-8;
* row format: `instances` / `predictions` is a list with one entry per batch
  row; with a single tensor each entry is its bare value, otherwise an object
  `{name: value}`;
* columnar format: `inputs` / `outputs` is the bare tensor value when there is
  a single tensor, otherwise an object `{name: value}`.

Example:

```python
proto = to_tensor_proto(np.array([b"..."], dtype=object))     # a Predict input
array = from_tensor_proto(response.outputs["probabilities"])
body = {"instances": rows_to_json({"examples": serialized})}  # a REST request
outputs = rows_from_json(reply["predictions"], {"probabilities": None, "logits": None})
```
"""

import base64
import binascii
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from serving import limits

#: Largest number of elements one request tensor may have (guards memory).
MAX_ELEMENTS = 1 << 26
#: Memory a decoded string element costs beyond its bytes (estimate for budgets).
STRING_OVERHEAD_BYTES = 32
#: Output names with this suffix are always base64-encoded in JSON.
BYTES_SUFFIX = "_bytes"
B64_KEY = "b64"

_JSON_DTYPES = (tf.string, tf.bool, tf.float16, tf.float32, tf.float64, tf.int8, tf.int16,
                tf.int32, tf.int64, tf.uint8, tf.uint16, tf.uint32, tf.uint64)


class TensorError(ValueError):
  """A tensor from outside that cannot be converted; the message is for the caller."""


def dtype_name(dtype: Any) -> str:
  """`"DT_FLOAT"` for a `types_pb2` enum, a `tf.DType` or anything `tf.as_dtype` takes."""
  if isinstance(dtype, int) and not isinstance(dtype, bool):
    enum = dtype
  else:
    enum = tf.as_dtype(dtype).as_datatype_enum
  try:
    return types_pb2.DataType.Name(enum)
  except ValueError:
    return f"unknown dtype {enum}"


def as_dtype(dtype: Any, name: str = "tensor") -> tf.DType:
  """`tf.DType` of an enum / name / numpy dtype; `TensorError` if it is not a data type."""
  try:
    result = tf.as_dtype(dtype)
  except (TypeError, ValueError) as e:
    raise TensorError(f"{name!r} has an unsupported dtype {dtype!r}") from e
  if result != result.base_dtype or result in (tf.resource, tf.variant):
    raise TensorError(f"{name!r} has an unsupported dtype {dtype_name(result)}")
  return result


def _num_elements(shape: Sequence[int], name: str) -> int:
  total = 1
  for size in shape:
    if size < 0:
      raise TensorError(f"{name!r} has a negative dimension in shape {list(shape)}")
    total *= size
  if total > MAX_ELEMENTS:
    raise TensorError(f"{name!r} has {total} elements, more than the limit {MAX_ELEMENTS}")
  return total


def _value_count(proto: tensor_pb2.TensorProto) -> int:
  """How many values the proto carries in its typed `*_val` fields (complex: pairs)."""
  count = 0
  for field, values in proto.ListFields():
    if field.name.endswith("_val"):
      count += len(values) // 2 if field.name in ("scomplex_val", "dcomplex_val") else len(values)
  return count


def _shape(proto: tensor_pb2.TensorProto) -> list:
  return [d.size for d in proto.tensor_shape.dim]


def decoded_bytes(proto: tensor_pb2.TensorProto) -> int:
  """Estimated memory of the array `from_tensor_proto` would make (nothing is allocated).

  Numbers take their dtype's size per element of the declared shape; strings
  their bytes plus `STRING_OVERHEAD_BYTES` each, the last value repeated where
  the proto carries fewer values than its shape (TF's shorthand).
  """
  try:
    dtype = tf.as_dtype(proto.dtype)
  except (TypeError, ValueError):
    return 0
  count = 1
  for size in _shape(proto):
    count *= max(size, 0)
  if dtype != tf.string:
    return count * dtype.size
  values = proto.string_val
  given = sum(len(v) for v in values[:count])
  repeated = max(count - len(values), 0) * (len(values[-1]) if values else 0)
  return given + repeated + count * STRING_OVERHEAD_BYTES


def check_request_size(protos: Mapping[str, tensor_pb2.TensorProto], max_bytes: int) -> None:
  """Checks declared shapes against the payload, then the request budget; allocates nothing.

  Raises:
    TensorError: if a tensor declares more values than it carries (beyond the
      shorthand's `limits.MAX_FILL_BYTES`), or the tensors together would
      decode to more than `max_bytes`.
  """
  for name, proto in protos.items():
    dtype = as_dtype(proto.dtype, name)
    if not proto.tensor_shape.unknown_rank:
      _check_declared_size(proto, dtype, _num_elements(_shape(proto), name), name)
  sizes = {name: decoded_bytes(proto) for name, proto in protos.items()}
  total = sum(sizes.values())
  if total > max_bytes:
    shown = ", ".join(repr(k) for k in sorted(sizes)[:5])
    raise TensorError(f"inputs {shown} would decode to {total} bytes, more than the request "
                      f"limit {max_bytes}")


def _check_declared_size(proto: tensor_pb2.TensorProto, dtype: tf.DType, count: int,
                         name: str) -> None:
  """Refuses a shape the payload does not back, before anything is allocated."""
  if proto.tensor_content:
    return  # its length is checked against the shape exactly
  given = _value_count(proto)
  if given >= count:
    return
  size = decoded_bytes(proto)
  if size > limits.MAX_FILL_BYTES:
    raise TensorError(
        f"{name!r}: shape {_shape(proto)} declares {count} {dtype_name(dtype)} values but the "
        f"request carries {given} value(s); repeating the last one would decode to {size} "
        f"bytes, more than the {limits.MAX_FILL_BYTES} bytes allowed for that shorthand: send "
        "every value")


def to_tensor_proto(value: Any, dtype: Any = None) -> tensor_pb2.TensorProto:
  """A `TensorProto` of an array-like (numpy array, nested lists, bytes, str).

  Args:
    value: the data; strings become UTF-8 bytes.
    dtype: optional target dtype (enum, `tf.DType` or numpy dtype).

  Returns:
    The proto, numbers packed in `tensor_content`.

  Raises:
    TensorError: if `value` cannot be represented as a tensor of `dtype`.
  """
  try:
    return tf.make_tensor_proto(value, dtype=None if dtype is None else as_dtype(dtype))
  except TensorError:
    raise
  except (TypeError, ValueError) as e:
    raise TensorError(f"cannot make a tensor of {type(value).__name__}: {e}") from e


def from_tensor_proto(proto: tensor_pb2.TensorProto, name: str = "tensor") -> np.ndarray:
  """The numpy array of a `TensorProto`, validated (strings come back as `bytes` objects).

  Args:
    proto: the tensor.
    name: the tensor's name, for error messages.

  Returns:
    The array, of the proto's dtype and shape.

  Raises:
    TensorError: on an unknown or unsupported dtype, an unknown rank, a
      negative or too large shape, contents that do not fit the shape, or a
      shape the contents do not back (fewer values than elements, repeating
      the last one, beyond `limits.MAX_FILL_BYTES` decoded).
  """
  dtype = as_dtype(proto.dtype, name)
  if proto.tensor_shape.unknown_rank:
    raise TensorError(f"{name!r} has an unknown rank; a request tensor needs a full shape")
  shape = _shape(proto)
  count = _num_elements(shape, name)
  _check_declared_size(proto, dtype, count, name)
  if proto.tensor_content:
    if dtype == tf.string:
      raise TensorError(f"{name!r}: DT_STRING values must be in string_val, not tensor_content")
    expected = count * dtype.size
    if len(proto.tensor_content) != expected:
      raise TensorError(f"{name!r}: tensor_content has {len(proto.tensor_content)} bytes, "
                        f"shape {shape} of {dtype_name(dtype)} needs {expected}")
  try:
    array = tf.make_ndarray(proto)
  except Exception as e:  # pylint: disable=broad-except  (any malformed content)
    raise TensorError(f"{name!r}: cannot read {dtype_name(dtype)} values of shape {shape}: "
                      f"{e}") from e
  if array.size != count:
    raise TensorError(f"{name!r}: {array.size} values do not fill shape {shape}")
  return array


def _value_error(name: str, dtype: tf.DType, value: Any) -> TensorError:
  text = repr(value)
  if len(text) > 60:
    text = text[:57] + "..."
  return TensorError(f"{name!r} must be {dtype_name(dtype)}, got JSON value {text}")


def _json_scalar(value: Any, dtype: Optional[tf.DType], name: str) -> Any:
  """One JSON leaf as the Python value numpy stores for `dtype` (None: as it comes)."""
  if dtype is None:
    if isinstance(value, dict):
      return _b64_decode(value, name)
    if isinstance(value, str):
      return value.encode("utf-8")
    if isinstance(value, (bool, int, float)):
      return value
    raise TensorError(f"{name!r} has an unsupported JSON value {value!r}")
  if dtype == tf.string:
    if isinstance(value, str):
      return value.encode("utf-8")
    if isinstance(value, dict):
      return _b64_decode(value, name)
    raise _value_error(name, dtype, value)
  if dtype == tf.bool:
    if isinstance(value, bool):
      return value
    raise _value_error(name, dtype, value)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    raise _value_error(name, dtype, value)
  if dtype.is_integer:
    if isinstance(value, float) and not value.is_integer():
      raise _value_error(name, dtype, value)
    value = int(value)
    if not dtype.min <= value <= dtype.max:
      raise TensorError(f"{name!r}: {value} is out of range for {dtype_name(dtype)}")
    return value
  try:
    return float(value)
  except OverflowError as e:
    raise TensorError(f"{name!r}: {value} is too large for {dtype_name(dtype)}") from e


def _b64_decode(value: Mapping[str, Any], name: str) -> bytes:
  if set(value) != {B64_KEY} or not isinstance(value[B64_KEY], str):
    raise TensorError(f"{name!r}: a JSON object in a tensor must be {{\"b64\": \"<base64>\"}}, "
                      f"got keys {sorted(value)[:5]}")
  try:
    return base64.b64decode(value[B64_KEY], validate=True)
  except (binascii.Error, ValueError) as e:
    raise TensorError(f"{name!r}: invalid base64 in \"b64\": {e}") from e


def is_b64(value: Any) -> bool:
  """Whether a JSON value is a `{"b64": ...}` binary string (not a named-tensor object)."""
  return isinstance(value, dict) and len(value) == 1 and B64_KEY in value


def _infer_dtype(leaves: Sequence[Any], name: str) -> np.dtype:
  kinds = {type(v) for v in leaves}
  if not kinds:
    return np.dtype(np.float32)
  if kinds <= {bytes}:
    return np.dtype(object)
  if kinds == {bool}:
    return np.dtype(bool)
  if kinds == {int}:
    return np.dtype(np.int64)
  if kinds <= {int, float}:
    return np.dtype(np.float64)
  raise TensorError(f"{name!r} mixes JSON value types {sorted(k.__name__ for k in kinds)}")


def from_json(value: Any, dtype: Any = None, name: str = "tensor") -> np.ndarray:
  """The numpy array of a JSON tensor value (nested lists of equal length).

  Args:
    value: a scalar, `{"b64": ...}` or nested lists of them.
    dtype: the tensor's dtype (a signature's input dtype); None infers it
      (strings -> bytes objects, ints -> int64, numbers -> float64).
    name: the tensor's name, for error messages.

  Returns:
    The array (strings as `bytes` objects).

  Raises:
    TensorError: on a ragged list, a value of the wrong type, bad base64 or
      a dtype JSON cannot carry.
  """
  tf_dtype = None if dtype is None else as_dtype(dtype, name)
  if tf_dtype is not None and tf_dtype.base_dtype not in _JSON_DTYPES:
    raise TensorError(f"{name!r}: {dtype_name(tf_dtype)} cannot be sent as JSON")
  shape = []
  probe = value
  while isinstance(probe, list):
    shape.append(len(probe))
    if not probe:
      break
    probe = probe[0]
  count = _num_elements(shape, name)
  leaves = []

  def walk(node, depth):
    if depth == len(shape):
      if isinstance(node, list):
        raise TensorError(f"{name!r} is a ragged list: deeper than shape {shape}")
      leaves.append(_json_scalar(node, tf_dtype, name))
      return
    if not isinstance(node, list) or len(node) != shape[depth]:
      raise TensorError(f"{name!r} is a ragged list: expected {shape[depth]} entries at "
                        f"depth {depth} of shape {shape}")
    for child in node:
      walk(child, depth + 1)

  walk(value, 0)
  if count == 0:
    leaves = []
  np_dtype = (_infer_dtype(leaves, name) if tf_dtype is None
              else np.dtype(object) if tf_dtype == tf.string else tf_dtype.as_numpy_dtype)
  array = np.empty(len(leaves), dtype=np_dtype)
  try:
    array[:] = leaves
  except (OverflowError, ValueError, TypeError) as e:
    raise TensorError(f"{name!r}: values do not fit {np_dtype}: {e}") from e
  return array.reshape(shape)


def _json_bytes(value: bytes, force_b64: bool) -> Any:
  if not force_b64:
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:
      pass
  return {B64_KEY: base64.b64encode(value).decode("ascii")}


def to_json(array: Any, name: str = "") -> Any:
  """The JSON value (nested lists) of an array; bytes as text or `{"b64": ...}`.

  Args:
    array: array-like; strings may be `bytes` or `str`.
    name: the tensor's name; a name ending in `_bytes` forces base64.

  Returns:
    A value `json.dumps` can write (non-finite floats as NaN/Infinity, as TF
    Serving writes them).
  """
  array = np.asarray(array)
  if array.dtype.kind in "biuf":
    return array.tolist()
  if array.dtype.kind in "OSU":
    force = name.endswith(BYTES_SUFFIX)

    def convert(node):
      if isinstance(node, list):
        return [convert(n) for n in node]
      if isinstance(node, str):
        node = node.encode("utf-8")
      if not isinstance(node, bytes):
        raise TensorError(f"{name!r}: cannot write {type(node).__name__} as a JSON string")
      return _json_bytes(node, force)

    return convert(array.tolist())
  raise TensorError(f"{name!r}: cannot write numpy dtype {array.dtype} as JSON")


def _batch_size(arrays: Mapping[str, np.ndarray]) -> int:
  sizes = {k: (np.shape(v)[0] if np.ndim(v) else None) for k, v in arrays.items()}
  if None in sizes.values():
    raise TensorError(f"row format needs a batch dimension; scalar tensors: "
                      f"{sorted(k for k, s in sizes.items() if s is None)}")
  if len(set(sizes.values())) > 1:
    raise TensorError(f"row format needs equal batch sizes (dimension 0), got {sizes}")
  return next(iter(sizes.values()))


def rows_to_json(arrays: Mapping[str, Any]) -> list:
  """`instances` / `predictions` of named tensors with a common batch dimension."""
  if not arrays:
    raise TensorError("no tensors to write")
  size = _batch_size({k: np.asarray(v) for k, v in arrays.items()})
  columns = {k: to_json(v, k) for k, v in arrays.items()}
  if len(columns) == 1:
    return next(iter(columns.values()))
  return [{k: column[i] for k, column in columns.items()} for i in range(size)]


def columns_to_json(arrays: Mapping[str, Any]) -> Any:
  """`inputs` / `outputs` of named tensors: the bare value when there is one."""
  if not arrays:
    raise TensorError("no tensors to write")
  columns = {k: to_json(v, k) for k, v in arrays.items()}
  return next(iter(columns.values())) if len(columns) == 1 else columns


def _named(value: Any, specs: Mapping[str, Any], what: str) -> Dict[str, Any]:
  """Splits a JSON value into named tensors: an object of names, or the single tensor."""
  if isinstance(value, dict) and not is_b64(value):
    unknown = sorted(set(value) - set(specs))
    if unknown:
      raise TensorError(f"{what} has unknown tensor(s) {unknown[:5]}; expected {sorted(specs)}")
    return value
  if len(specs) != 1:
    raise TensorError(f"{what} must be an object naming the tensors {sorted(specs)}")
  return {next(iter(specs)): value}


def rows_from_json(rows: Any, specs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """Named arrays of `instances` / `predictions` (row format).

  Args:
    rows: the JSON list, one entry per batch row.
    specs: tensor name -> dtype (None infers); a single name allows bare rows.

  Returns:
    name -> array with the rows stacked on dimension 0.

  Raises:
    TensorError: on a non-list, an empty list, rows naming different tensors
      or tensors of different shapes across rows.
  """
  if not isinstance(rows, list):
    raise TensorError(f"row format needs a JSON list, got {type(rows).__name__}")
  if not rows:
    raise TensorError("row format list is empty: send at least one row")
  named = [_named(row, specs, f"row {i}") for i, row in enumerate(rows)]
  keys = set(named[0])
  for i, row in enumerate(named):
    if set(row) != keys:
      raise TensorError(f"row {i} names {sorted(row)}, row 0 names {sorted(keys)}")
  result = {}
  for key in sorted(keys):
    values = [from_json(row[key], specs[key], key) for row in named]
    shapes = {v.shape for v in values}
    if len(shapes) > 1:
      raise TensorError(f"{key!r} has different shapes across rows: {sorted(shapes)[:3]}")
    result[key] = np.stack(values)
  return result


def columns_from_json(value: Any, specs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
  """Named arrays of `inputs` / `outputs` (columnar format); arguments as `rows_from_json`."""
  return {k: from_json(v, specs[k], k) for k, v in _named(value, specs, "columnar value").items()}
