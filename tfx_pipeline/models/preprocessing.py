"""The Transform component's `preprocessing_fn`: raw interactions -> model inputs.

Statistics and vocabularies are learnt on the training split only (the
Transform component's `splits_config`) and applied to every split and,
through the exported Transform graph, to serving requests. One raw
interaction becomes::

    member_key        bytes    [N]      the raw member id (tasks are grouped by it)
    member_id         int64    [N]      1..n for members of the training period, 0 = unknown
    item_id           int64    [N]      1..m likewise for items, 0 = unknown
    member_features   float32  [N, Dm]  the member side, see below
    item_features     float32  [N, Di]
    context_features  float32  [N, Dc]  (Dc may be 0)
    label             float32  [N]
    timestamp         int64    [N]

Each side is its numeric columns z-scored (spec order), then each
categorical column one-hot over its training vocabulary followed by
`OOV_BUCKETS` out-of-vocabulary slots, where unseen and missing values go.
`label` and `timestamp` are absent from serving requests; the Transform
layer then drops the two outputs that need them.

The feature spec arrives as JSON in `custom_config[FEATURE_SPEC_KEY]`.
"""

from typing import Any, Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from limaml_keras import tensor_layout
from limaml_keras import schema

#: `custom_config` key of the feature spec JSON.
FEATURE_SPEC_KEY = "feature_spec"
#: Output keys of the raw member id and the timestamp (`limaml_keras.tensor_layout`).
MEMBER_KEY = tensor_layout.MEMBER_KEY
TIMESTAMP = tensor_layout.TIMESTAMP
#: Vocabulary file names of the id columns (`TFTransformOutput.vocabulary_size_by_name`).
MEMBER_VOCABULARY = "member_id"
ITEM_VOCABULARY = "item_id"
#: Out-of-vocabulary slots of every categorical one-hot.
OOV_BUCKETS = 1

_SIDE_OUTPUTS = (("member", tensor_layout.MEMBER_FEATURES), ("item", tensor_layout.ITEM_FEATURES),
                 ("context", tensor_layout.CONTEXT_FEATURES))


def _dense(value):
  """A raw feature as a dense `[N]` tensor (`[N, 1]` and sparse inputs too)."""
  if isinstance(value, tf.sparse.SparseTensor):
    num_rows = value.dense_shape[0]
    value = tf.sparse.to_dense(tf.sparse.reset_shape(value, [num_rows, 1]),
                               default_value="" if value.dtype == tf.string else 0)
  return tf.reshape(value, [-1])


def _as_string(value):
  """Ids and categories as strings, whatever type ExampleGen inferred."""
  value = _dense(value)
  return value if value.dtype == tf.string else tf.strings.as_string(value)


def _id_index(value, vocabulary_name: str):
  """Vocabulary index + 1: known ids are 1..n, unknown ids 0."""
  index = tft.compute_and_apply_vocabulary(value, default_value=-1,
                                           vocab_filename=vocabulary_name)
  return tf.cast(index, tf.int64) + 1


def _one_hot(value, column: str):
  """One-hot `[N, vocabulary + OOV_BUCKETS]` of a categorical column."""
  index = tft.compute_and_apply_vocabulary(value, num_oov_buckets=OOV_BUCKETS,
                                           vocab_filename=column)
  depth = tft.experimental.get_vocabulary_size_by_name(column) + OOV_BUCKETS
  return tf.one_hot(index, tf.cast(depth, tf.int32), dtype=tf.float32)


def _side_features(inputs: Mapping[str, Any], spec: schema.FeatureSpec, side: str, num_rows):
  numeric, categorical = spec.side(side)
  parts = [tf.zeros(tf.stack([num_rows, 0]), tf.float32)]
  parts += [tft.scale_to_z_score(tf.cast(_dense(inputs[c]), tf.float32))[:, tf.newaxis]
            for c in numeric]
  parts += [_one_hot(_as_string(inputs[c]), c) for c in categorical]
  return tf.concat(parts, axis=1)


def preprocessing_fn(inputs: Mapping[str, Any],
                     custom_config: Mapping[str, Any]) -> Dict[str, tf.Tensor]:
  """tf.Transform callback: raw features -> transformed features (module docstring).

  Args:
    inputs: raw features, keyed by raw column name.
    custom_config: the Transform component's `custom_config`, holding the
      feature spec JSON under `FEATURE_SPEC_KEY`.

  Returns:
    The transformed features.
  """
  spec = schema.spec_from_json(custom_config[FEATURE_SPEC_KEY])
  member_key = _as_string(inputs[schema.MEMBER_ID_COLUMN])
  num_rows = tf.shape(member_key)[0]
  outputs = {
      MEMBER_KEY: member_key,
      tensor_layout.MEMBER_ID: _id_index(member_key, MEMBER_VOCABULARY),
      tensor_layout.ITEM_ID: _id_index(_as_string(inputs[schema.ITEM_ID_COLUMN]), ITEM_VOCABULARY),
      tensor_layout.LABEL: tf.cast(_dense(inputs[schema.LABEL_COLUMN]), tf.float32),
      TIMESTAMP: tf.cast(_dense(inputs[schema.TIMESTAMP_COLUMN]), tf.int64),
  }
  for side, key in _SIDE_OUTPUTS:
    outputs[key] = _side_features(inputs, spec, side, num_rows)
  return outputs
