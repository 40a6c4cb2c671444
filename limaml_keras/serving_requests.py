"""Builds TF Serving requests that ask the LiMAML ranker to score candidate items for a member.

The serving signature (`serving_default` of the pushed SavedModel, see
`tfx_pipeline.models.export` and `tfx_pipeline.models.personalized_model`) takes `examples`,
a string `[N]` tensor of serialized raw `tf.Example`s. To rank N candidate
items for one member, the request carries one example per candidate: the
member's raw columns (member and context features, `member_id`) merged with
the candidate's raw columns (`item_id`, item features). The same builder
feeds the gRPC and REST clients (`serving.client`) and the warmup records
(`limaml_keras.warmup`), so warmup exercises exactly what production sends.

Example:

```python
examples = serialized_examples({"member_id": "m1", "age": 30.0},
                               [{"item_id": "i1", "year": 1990}], feature_spec)
request = predict_request(examples, model_name="limaml")      # gRPC
body = rest_body(examples)                                     # REST JSON
```
"""

import base64
from typing import Any, Dict, List, Mapping, Optional, Sequence

import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from limaml_keras import serving_contract

#: The most candidates one request may carry. `batching_parameters.txt`'s
#: `max_batch_size` (1024) must stay above it: TF Serving rejects a request
#: with more rows than a batch holds.
MAX_CANDIDATES = 1000


def request_rows(member: Mapping[str, Any],
                 items: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
  """One raw row per candidate: the member's columns, then the item's.

  Args:
    member: raw member-side columns (`member_id`, member and context features).
    items: raw columns of each candidate (`item_id`, item features).

  Returns:
    The rows, candidate order kept.

  Raises:
    ValueError: when there are no candidates or more than `MAX_CANDIDATES`,
      or when a candidate repeats a member column with another value.
  """
  if not items:
    raise ValueError("a ranking request needs at least one candidate item")
  if len(items) > MAX_CANDIDATES:
    raise ValueError(f"{len(items)} candidate items in one request; at most {MAX_CANDIDATES} "
                     "(split the candidates over several requests)")
  rows = []
  for item in items:
    clash = sorted(k for k in set(member) & set(item) if member[k] != item[k])
    if clash:
      raise ValueError(f"candidate item {item.get('item_id')!r} and the member disagree on "
                       f"columns {clash}")
    rows.append({**member, **item})
  return rows


def serialized_examples(member: Mapping[str, Any], items: Sequence[Mapping[str, Any]],
                        feature_spec: Mapping[str, tf.io.FixedLenFeature]) -> List[bytes]:
  """Serialized raw `tf.Example`s, one per candidate (`request_rows` + `serving_contract.raw_example`).

  Args:
    member: raw member-side columns.
    items: raw columns of each candidate.
    feature_spec: the model's raw serving feature spec
      (`serving_contract.serving_feature_spec`, or `Catalog.feature_spec`).

  Returns:
    One serialized example per candidate.

  Raises:
    ValueError: naming a column the spec needs that a row lacks, or a value
      that does not convert to the column's type.
  """
  examples = []
  for row in request_rows(member, items):
    try:
      examples.append(serving_contract.raw_example(row, feature_spec).SerializeToString())
    except (TypeError, ValueError) as e:
      raise ValueError(f"item {row.get('item_id')!r}: {e}") from None
  return examples


def _check_examples(examples: Sequence[bytes]) -> List[bytes]:
  examples = list(examples)
  if not examples:
    raise ValueError("a predict request needs at least one example")
  bad = [type(e).__name__ for e in examples if not isinstance(e, bytes)]
  if bad:
    raise ValueError(f"examples must be serialized tf.Example bytes, got {bad[0]}")
  return examples


def predict_request(examples: Sequence[bytes], model_name: str = "limaml",
                    signature_name: str = serving_contract.SERVING_SIGNATURE, version: Optional[int] = None,
                    version_label: Optional[str] = None) -> predict_pb2.PredictRequest:
  """A gRPC `PredictRequest` with `inputs["examples"]` = DT_STRING `[N]`.

  Args:
    examples: serialized `tf.Example`s.
    model_name: the model's name in the server's `models.config`.
    signature_name: the SavedModel signature to run.
    version: a specific version to ask for (default: the server's latest).
    version_label: a version label such as `stable` (exclusive with `version`).

  Returns:
    The request.
  """
  if version is not None and version_label is not None:
    raise ValueError("ask for a version or a version label, not both")
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  if version is not None:
    request.model_spec.version.value = int(version)
  if version_label is not None:
    request.model_spec.version_label = version_label
  examples = _check_examples(examples)
  request.inputs[serving_contract.EXAMPLES].CopyFrom(
      tf.make_tensor_proto(examples, dtype=tf.string, shape=[len(examples)]))
  return request


def request_examples(request: predict_pb2.PredictRequest) -> List[bytes]:
  """The serialized examples a `PredictRequest` carries (its `examples` input)."""
  if serving_contract.EXAMPLES not in request.inputs:
    raise ValueError(f"predict request has no {serving_contract.EXAMPLES!r} input; it has {sorted(request.inputs)}")
  proto = request.inputs[serving_contract.EXAMPLES]
  if proto.dtype != tf.string.as_datatype_enum:
    raise ValueError(f"input {serving_contract.EXAMPLES!r} must be DT_STRING, got {tf.as_dtype(proto.dtype).name}")
  return list(proto.string_val)


def rest_body(examples: Sequence[bytes], signature_name: str = serving_contract.SERVING_SIGNATURE,
              columnar: bool = False) -> Dict[str, Any]:
  """The JSON body of a REST `:predict` call (binary strings as `{"b64": ...}`).

  Args:
    examples: serialized `tf.Example`s.
    signature_name: the SavedModel signature to run.
    columnar: use the columnar `inputs` format (`{"inputs": {"examples": [...]}}`)
      instead of the row format (`{"instances": [...]}`; one input, so each
      instance is the bare value).

  Returns:
    The body, ready for `json.dumps`.
  """
  values = [{"b64": base64.b64encode(e).decode("ascii")} for e in _check_examples(examples)]
  if columnar:
    return {"signature_name": signature_name, "inputs": {serving_contract.EXAMPLES: values}}
  return {"signature_name": signature_name, "instances": values}
