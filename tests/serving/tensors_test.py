"""Tests for serving.tensors: TensorProto and JSON conversions, and their errors."""
import json

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from serving import tensors


@pytest.mark.parametrize("array", [
    np.array([1.5, -2.0], np.float32), np.arange(6, dtype=np.int64).reshape(2, 3),
    np.array([b"a", b"\xff\x00"], dtype=object), np.array([True, False]),
    np.zeros([0, 4], np.float32)])
def test_tensor_proto_round_trip(array):
  back = tensors.from_tensor_proto(tensors.to_tensor_proto(array))
  assert back.dtype == array.dtype and back.shape == array.shape
  assert back.tolist() == array.tolist()


def test_dtype_name():
  assert tensors.dtype_name(types_pb2.DT_FLOAT) == "DT_FLOAT"
  assert tensors.dtype_name(tf.string) == "DT_STRING"
  assert tensors.dtype_name(999) == "unknown dtype 999"


@pytest.mark.parametrize("proto,message", [
    (tensor_pb2.TensorProto(dtype=999), "unsupported dtype"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_RESOURCE), "unsupported dtype"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                            tensor_shape={"unknown_rank": True}), "unknown rank"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT,
                            tensor_shape={"dim": [{"size": -3}]}), "negative dimension"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"],
                            tensor_shape={"dim": [{"size": 1 << 40}]}), "more than the limit"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"abc",
                            tensor_shape={"dim": [{"size": 2}]}), "tensor_content has 3 bytes"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_content=b"abcd",
                            tensor_shape={"dim": [{"size": 1}]}), "string_val"),
    (tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1, 2, 3],
                            tensor_shape={"dim": [{"size": 2}]}), "'x'"),
])
def test_bad_tensor_proto_is_a_readable_error(proto, message):
  with pytest.raises(tensors.TensorError, match=message):
    tensors.from_tensor_proto(proto, "x")


def test_short_value_list_repeats_the_last_value_as_tf_does():
  proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[2.0],
                                 tensor_shape={"dim": [{"size": 3}]})
  assert tensors.from_tensor_proto(proto).tolist() == [2.0, 2.0, 2.0]


def test_from_json_with_dtype():
  assert tensors.from_json([[1, 2], [3, 4]], tf.float32).dtype == np.float32
  strings = tensors.from_json(["text", {"b64": "/wA="}], tf.string)
  assert strings.tolist() == [b"text", b"\xff\x00"]
  assert tensors.from_json([], tf.int64).shape == (0,)
  assert tensors.from_json(7, types_pb2.DT_INT32).tolist() == 7


def test_from_json_infers_dtype():
  assert tensors.from_json([1, 2]).dtype == np.int64
  assert tensors.from_json([1, 2.5]).dtype == np.float64
  assert tensors.from_json([True]).dtype == bool
  assert tensors.from_json([{"b64": "YQ=="}, "b"]).tolist() == [b"a", b"b"]


@pytest.mark.parametrize("value,dtype,message", [
    ([1.5], tf.string, "must be DT_STRING, got JSON value 1.5"),
    (["a"], tf.float32, "must be DT_FLOAT"),
    ([1.5], tf.int64, "must be DT_INT64"),
    ([True], tf.float32, "must be DT_FLOAT"),
    ([300], tf.uint8, "out of range"),
    ([[1, 2], [3]], tf.float32, "ragged"),
    ([[1, 2], 3], tf.float32, "ragged"),
    ([1, [2]], tf.float32, "ragged"),
    ([{"b64": "!!"}], tf.string, "invalid base64"),
    ([{"b64": "YQ==", "x": 1}], tf.string, "b64"),
    ([10 ** 400], tf.float32, "too large"),
    ([1 + 0j], tf.complex64, "cannot be sent as JSON"),
    ([None], tf.float32, "must be DT_FLOAT"),
    ([10 ** 30], None, "do not fit"),
    (["a", 1], None, "mixes"),
])
def test_from_json_errors(value, dtype, message):
  with pytest.raises(tensors.TensorError, match=message):
    tensors.from_json(value, dtype, "x")


def test_to_json_strings_and_numbers():
  assert tensors.to_json(np.array([b"ok", b"\xff"], dtype=object)) == ["ok", {"b64": "/w=="}]
  assert tensors.to_json(np.array([b"ok"], dtype=object), "id_bytes") == [{"b64": "b2s="}]
  assert tensors.to_json(np.array([[1.5]], np.float32)) == [[1.5]]
  assert json.dumps(tensors.to_json(np.array([np.nan, np.inf]))) == "[NaN, Infinity]"


def test_rows_round_trip_single_and_multiple_tensors():
  single = {"examples": np.array([b"a", b"b"], dtype=object)}
  assert tensors.rows_to_json(single) == ["a", "b"]
  assert tensors.rows_from_json(["a", "b"], {"examples": tf.string})["examples"].tolist() == [
      b"a", b"b"]
  multiple = {"p": np.array([0.5, 0.25], np.float32), "e": np.array([[1, 2], [3, 4]], np.int64)}
  rows = tensors.rows_to_json(multiple)
  assert rows == [{"p": 0.5, "e": [1, 2]}, {"p": 0.25, "e": [3, 4]}]
  back = tensors.rows_from_json(rows, {"p": tf.float32, "e": tf.int64})
  assert back["e"].tolist() == [[1, 2], [3, 4]] and back["p"].dtype == np.float32
  # A single input may also be named in each row; a b64 object is a value, not a name.
  named = tensors.rows_from_json([{"examples": {"b64": "YQ=="}}], {"examples": tf.string})
  assert named["examples"].tolist() == [b"a"]
  assert tensors.rows_from_json([{"b64": "YQ=="}], {"examples": tf.string})[
      "examples"].tolist() == [b"a"]


@pytest.mark.parametrize("rows,message", [
    ({"a": 1}, "needs a JSON list"), ([], "empty"), ([1], "must be an object naming"),
    ([{"p": 1}, {"e": [1]}], "row 1 names"), ([{"p": 1, "zz": 2}], "unknown tensor"),
    ([{"p": 1, "e": [1]}, {"p": 1, "e": [1, 2]}], "different shapes")])
def test_rows_from_json_errors(rows, message):
  with pytest.raises(tensors.TensorError, match=message):
    tensors.rows_from_json(rows, {"p": tf.float32, "e": tf.int64})


def test_rows_to_json_needs_equal_batches():
  with pytest.raises(tensors.TensorError, match="equal batch sizes"):
    tensors.rows_to_json({"a": np.zeros([2]), "b": np.zeros([3])})
  with pytest.raises(tensors.TensorError, match="batch dimension"):
    tensors.rows_to_json({"a": np.float32(1)})


def test_columns_round_trip():
  arrays = {"p": np.array([0.5], np.float32), "e": np.array([[1, 2]], np.int64)}
  value = tensors.columns_to_json(arrays)
  assert value == {"p": [0.5], "e": [[1, 2]]}
  back = tensors.columns_from_json(value, {"p": tf.float32, "e": tf.int64})
  assert back["e"].tolist() == [[1, 2]]
  assert tensors.columns_to_json({"p": arrays["p"]}) == [0.5]
  assert tensors.columns_from_json([0.5], {"p": None})["p"].tolist() == [0.5]
  with pytest.raises(tensors.TensorError, match="unknown tensor"):
    tensors.columns_from_json({"q": 1}, {"p": None})


@pytest.mark.parametrize("proto", [
    # The 38-byte memory bomb: one value, 2^26 declared (within the element limit).
    tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"x"],
                           tensor_shape={"dim": [{"size": 1 << 26}]}),
    tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING,
                           tensor_shape={"dim": [{"size": 1 << 24}]}),  # no value: zeros
    tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0],
                           tensor_shape={"dim": [{"size": 4096}, {"size": 4096}]}),
])
def test_declared_shape_beyond_the_payload_is_refused_before_allocating(proto):
  with pytest.raises(tensors.TensorError) as error:
    tensors.from_tensor_proto(proto, "examples")
  message = str(error.value)
  assert "'examples'" in message and "declares" in message and "carries" in message
  assert f"{len(proto.string_val) + len(proto.float_val)} value" in message


def test_request_budget_counts_every_tensor():
  proto = tensors.to_tensor_proto(np.zeros([1000], np.float32))
  assert tensors.decoded_bytes(proto) == 4000
  strings = tensors.to_tensor_proto(np.array([b"abc", b"de"], dtype=object))
  assert tensors.decoded_bytes(strings) == 5 + 2 * tensors.STRING_OVERHEAD_BYTES
  tensors.check_request_size({"a": proto, "b": proto}, 8000)
  with pytest.raises(tensors.TensorError, match=r"'a', 'b'.*8000 bytes.*limit 7999"):
    tensors.check_request_size({"a": proto, "b": proto}, 7999)
