"""The serving contract: signature names, tensor names and the request `tf.Example` layout.

Every SavedModel LiMAML exports (the Trainer's model, `tfx_pipeline.models.export`;
the personalised serving model, `tfx_pipeline.models.personalized_model`) and
every client that calls one (`serving.client`, warmup records) use these names.
A serving request is a batch of serialized raw `tf.Example`s: one per
(member, candidate item), with the raw CSV columns of `limaml_keras.schema`
except `label` and `timestamp`.
"""

from typing import Any, Dict, Mapping

import tensorflow as tf

from limaml_keras import schema
from limaml_keras import tensor_layout as F

SERVING_SIGNATURE = "serving_default"
PREDICT_WITH_EMBEDDING_SIGNATURE = "predict_with_embedding"
ADAPT_SIGNATURE = "adapt"
#: Inputs of the `adapt` signature, in its argument order: a batch of members' support sets.
ADAPT_INPUTS = (F.MEMBER_ID, F.MEMBER_FEATURES) + tuple(
    F.side_key(F.SUPPORT, name) for name in F.INTERACTION_KEYS)
EXAMPLES = "examples"
PROBABILITIES = "probabilities"
LOGITS = "logits"
#: Output of the personalised serving model: whether the member was in its table (else cold start).
PERSONALISED = "personalised"

#: Raw columns a serving request need not carry.
NOT_SERVED = (schema.LABEL_COLUMN, schema.TIMESTAMP_COLUMN)


def serving_feature_spec(raw_feature_spec: Mapping[str, tf.io.FixedLenFeature]
                         ) -> Dict[str, tf.io.FixedLenFeature]:
  """The raw feature spec of a serving request: `raw_feature_spec` without label and timestamp.

  Args:
    raw_feature_spec: for example `TFTransformOutput.raw_feature_spec()`.
  """
  return {k: v for k, v in raw_feature_spec.items() if k not in NOT_SERVED}


def raw_example(values: Mapping[str, Any],
                feature_spec: Mapping[str, tf.io.FixedLenFeature]) -> tf.train.Example:
  """A serving request row as a `tf.Example`, each value cast to its raw feature's dtype.

  Args:
    values: raw column -> value (for example a CSV row as strings; `bytes`
      are kept as they are for string columns); columns not in
      `feature_spec` are ignored.
    feature_spec: `serving_feature_spec(...)`.

  Returns:
    The example.

  Raises:
    ValueError: naming a column of `feature_spec` missing from `values`.
  """
  feature = {}
  for name, spec in feature_spec.items():
    if name not in values:
      raise ValueError(f"serving request lacks column {name!r}")
    value = values[name]
    if spec.dtype == tf.string:
      encoded = value if isinstance(value, bytes) else str(value).encode()
      feature[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
    elif spec.dtype.is_integer:
      feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
    else:
      feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
  return tf.train.Example(features=tf.train.Features(feature=feature))
