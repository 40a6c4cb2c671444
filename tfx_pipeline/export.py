"""Exports a trained LiMAML Keras model as a TF Serving SavedModel.

Signatures (all names explicit, as TF Serving clients use them):

* `serving_default`: `examples` string `[N]` of serialized raw `tf.Example`s
  (the raw CSV columns; `label` and `timestamp` may be absent) ->
  `probabilities` `[N]` and `logits` `[N]`. The Transform graph runs inside
  (`tft_layer`); the member's meta embedding is the un-adapted Meta Block's,
  the cold-start prior.
* `predict_with_embedding`: `examples` plus `meta_embedding` `[N, d]` (for
  example an adapted embedding from an external store) -> the same outputs.
* `adapt`: padded support sets of T members in the transformed task layout
  (`member_features` `[T, Dm]`, `support_item_id` `[T, S]`,
  `support_item_features` `[T, S, Di]`, `support_context_features`
  `[T, S, Dc]`, `support_label` `[T, S]`, `support_mask` `[T, S]`, any S)
  -> `meta_embedding` `[T, d]`, the Meta Block adapted on each support set.
"""

from typing import Any, Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from limaml_keras import features
from limaml_keras import model as model_lib
from limaml_keras import schema

SERVING_SIGNATURE = "serving_default"
PREDICT_WITH_EMBEDDING_SIGNATURE = "predict_with_embedding"
ADAPT_SIGNATURE = "adapt"
EXAMPLES = "examples"
PROBABILITIES = "probabilities"
LOGITS = "logits"

#: Raw columns a serving request need not carry.
_NOT_SERVED = (schema.LABEL_COLUMN, schema.TIMESTAMP_COLUMN)
_SUPPORT_KEYS = tuple(features.side_key(features.SUPPORT, name)
                      for name in features.INTERACTION_KEYS)


def serving_feature_spec(tft_output: tft.TFTransformOutput) -> Dict[str, tf.io.FixedLenFeature]:
  """The raw feature spec of a serving request (no label, no timestamp)."""
  spec = tft_output.raw_feature_spec()
  return {k: v for k, v in spec.items() if k not in _NOT_SERVED}


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


def _adapt_input_signature(model: model_lib.PersonalizedRanker):
  spec = model.interaction_spec()
  item_dim = spec[features.ITEM_FEATURES].shape[-1]
  context_dim = spec[features.CONTEXT_FEATURES].shape[-1]
  shapes = {features.ITEM_ID: ([None, None], tf.int64),
            features.ITEM_FEATURES: ([None, None, item_dim], tf.float32),
            features.CONTEXT_FEATURES: ([None, None, context_dim], tf.float32),
            features.LABEL: ([None, None], tf.float32),
            features.MASK: ([None, None], tf.float32)}
  signature = [spec[features.MEMBER_FEATURES]]
  for name in features.INTERACTION_KEYS:
    shape, dtype = shapes[name]
    key = features.side_key(features.SUPPORT, name)
    signature.append(tf.TensorSpec(shape, dtype, name=key))
  return signature


def transform_requests(tft_layer: tf.keras.layers.Layer,
                       raw_spec: Mapping[str, tf.io.FixedLenFeature],
                       serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Parses serialized raw `tf.Example`s and applies the Transform layer to them."""
  return tft_layer(tf.io.parse_example(serialized, raw_spec))


def interaction_batch(model: model_lib.PersonalizedRanker,
                      transformed: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """The transformed features `model` scores, cast and shaped as its `interaction_spec`."""
  return {k: tf.ensure_shape(tf.cast(transformed[k], s.dtype), s.shape)
          for k, s in model.interaction_spec().items()}


def score_outputs(model: model_lib.PersonalizedRanker,
                  batch: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """`{PROBABILITIES, LOGITS}` of an interaction batch (cold start unless it has an embedding)."""
  logits = model.score_logits(batch)
  return {PROBABILITIES: tf.sigmoid(logits), LOGITS: logits}


#: Largest |value| `predict_with_embedding` accepts in `meta_embedding` (trained ones are O(1)).
MAX_EMBEDDING_ABS = 1e4


def checked_embedding(meta_embedding: tf.Tensor) -> tf.Tensor:
  """`meta_embedding`, checked in the graph: NaN, +-Inf or |value| > `MAX_EMBEDDING_ABS` fail.

  The check is part of the `predict_with_embedding` signature, so stock TF
  Serving answers such a request INVALID_ARGUMENT / 400 like the dev server
  does, instead of a plausible probability.
  """
  finite = tf.reduce_all(tf.abs(meta_embedding) <= MAX_EMBEDDING_ABS)  # False for NaN too
  check = tf.debugging.Assert(finite, [
      f"input '{features.META_EMBEDDING}' must hold finite values with |value| <= "
      f"{MAX_EMBEDDING_ABS:g} (got NaN, Inf or a larger value)"], summarize=1,
      name="check_meta_embedding")
  with tf.control_dependencies([check]):
    return tf.identity(meta_embedding)


def make_signatures(model: model_lib.PersonalizedRanker,
                    tft_output: tft.TFTransformOutput) -> Dict[str, Any]:
  """The serving signatures of a trained (built) model (module docstring)."""
  # An attribute, so the Transform layer and its assets are saved with the model.
  model.tft_layer = tft_output.transform_features_layer()
  raw_spec = serving_feature_spec(tft_output)

  def interactions(serialized):
    return interaction_batch(model, transform_requests(model.tft_layer, raw_spec, serialized))

  examples_spec = tf.TensorSpec([None], tf.string, name=EXAMPLES)

  @tf.function(input_signature=[examples_spec])
  def serve(examples):
    return score_outputs(model, interactions(examples))

  @tf.function(input_signature=[
      examples_spec, tf.TensorSpec([None, model.meta_block.embedding_dim], tf.float32,
                                   name=features.META_EMBEDDING)])
  def serve_with_embedding(examples, meta_embedding):
    return score_outputs(model, {**interactions(examples),
                                 features.META_EMBEDDING: checked_embedding(meta_embedding)})

  @tf.function(input_signature=_adapt_input_signature(model))
  def adapt(member_features, support_item_id, support_item_features, support_context_features,
            support_label, support_mask):
    support = (support_item_id, support_item_features, support_context_features, support_label,
               support_mask)
    batch = {features.MEMBER_FEATURES: member_features, **dict(zip(_SUPPORT_KEYS, support))}
    return {features.META_EMBEDDING: model.adapt_embeddings(batch)}

  return {SERVING_SIGNATURE: serve.get_concrete_function(),
          PREDICT_WITH_EMBEDDING_SIGNATURE: serve_with_embedding.get_concrete_function(),
          ADAPT_SIGNATURE: adapt.get_concrete_function()}


def export_serving_model(model: model_lib.PersonalizedRanker, tft_output: tft.TFTransformOutput,
                         path: str) -> str:
  """Saves `model` with the serving signatures to `path` (tag `serve`)."""
  model.save(path, save_format="tf", signatures=make_signatures(model, tft_output))
  return path
