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
  (`member_id` `[T]` (the Transform vocabulary's index, 0 = unknown; read
  only by a model with a member-ID embedding), `member_features` `[T, Dm]`,
  `support_item_id` `[T, S]`,
  `support_item_features` `[T, S, Di]`, `support_context_features`
  `[T, S, Dc]`, `support_label` `[T, S]`, `support_mask` `[T, S]`, any S)
  -> `meta_embedding` `[T, d]`, the Meta Block adapted on each support set
  (plus the member's ID row for a model with a member-ID embedding, so
  `predict_with_embedding` takes it as it comes).
"""

from typing import Any, Dict, Mapping

import tensorflow as tf
import tensorflow_transform as tft

from limaml_keras import tensor_layout
from limaml_keras import model as model_lib
from limaml_keras import schema
from limaml_keras import serving_contract

def _adapt_input_signature(model: model_lib.PersonalizedRanker):
  """`TensorSpec`s of the `adapt` signature, in `serving_contract.ADAPT_INPUTS` order."""
  spec = model.interaction_spec()
  item_dim = spec[tensor_layout.ITEM_FEATURES].shape[-1]
  context_dim = spec[tensor_layout.CONTEXT_FEATURES].shape[-1]
  shapes = {tensor_layout.ITEM_ID: ([None, None], tf.int64),
            tensor_layout.ITEM_FEATURES: ([None, None, item_dim], tf.float32),
            tensor_layout.CONTEXT_FEATURES: ([None, None, context_dim], tf.float32),
            tensor_layout.LABEL: ([None, None], tf.float32),
            tensor_layout.MASK: ([None, None], tf.float32)}
  specs = {tensor_layout.MEMBER_ID: spec[tensor_layout.MEMBER_ID],
           tensor_layout.MEMBER_FEATURES: spec[tensor_layout.MEMBER_FEATURES]}
  for name, (shape, dtype) in shapes.items():
    key = tensor_layout.side_key(tensor_layout.SUPPORT, name)
    specs[key] = tf.TensorSpec(shape, dtype, name=key)
  return [specs[key] for key in serving_contract.ADAPT_INPUTS]


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
  """`{serving_contract.PROBABILITIES, serving_contract.LOGITS}` of an interaction batch (cold start unless it has an embedding)."""
  logits = model.score_logits(batch)
  return {serving_contract.PROBABILITIES: tf.sigmoid(logits), serving_contract.LOGITS: logits}


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
      f"input '{tensor_layout.META_EMBEDDING}' must hold finite values with |value| <= "
      f"{MAX_EMBEDDING_ABS:g} (got NaN, Inf or a larger value)"], summarize=1,
      name="check_meta_embedding")
  with tf.control_dependencies([check]):
    return tf.identity(meta_embedding)


def make_signatures(model: model_lib.PersonalizedRanker,
                    tft_output: tft.TFTransformOutput) -> Dict[str, Any]:
  """The serving signatures of a trained (built) model (module docstring)."""
  # An attribute, so the Transform layer and its assets are saved with the model.
  model.tft_layer = tft_output.transform_features_layer()
  raw_spec = serving_contract.serving_feature_spec(tft_output.raw_feature_spec())

  def interactions(serialized):
    return interaction_batch(model, transform_requests(model.tft_layer, raw_spec, serialized))

  examples_spec = tf.TensorSpec([None], tf.string, name=serving_contract.EXAMPLES)

  @tf.function(input_signature=[examples_spec])
  def serve(examples):
    return score_outputs(model, interactions(examples))

  @tf.function(input_signature=[
      examples_spec, tf.TensorSpec([None, model.meta_block.embedding_dim], tf.float32,
                                   name=tensor_layout.META_EMBEDDING)])
  def serve_with_embedding(examples, meta_embedding):
    return score_outputs(model, {**interactions(examples),
                                 tensor_layout.META_EMBEDDING: checked_embedding(meta_embedding)})

  @tf.function(input_signature=_adapt_input_signature(model))
  def adapt(member_id, member_features, support_item_id, support_item_features,
            support_context_features, support_label, support_mask):
    batch = dict(zip(serving_contract.ADAPT_INPUTS, (
        member_id, member_features, support_item_id, support_item_features,
        support_context_features, support_label, support_mask)))
    return {tensor_layout.META_EMBEDDING: model.adapt_embeddings(batch)}

  return {serving_contract.SERVING_SIGNATURE: serve.get_concrete_function(),
          serving_contract.PREDICT_WITH_EMBEDDING_SIGNATURE: serve_with_embedding.get_concrete_function(),
          serving_contract.ADAPT_SIGNATURE: adapt.get_concrete_function()}


def export_serving_model(model: model_lib.PersonalizedRanker, tft_output: tft.TFTransformOutput,
                         path: str) -> str:
  """Saves `model` with the serving signatures to `path` (tag `serve`)."""
  model.save(path, save_format="tf", signatures=make_signatures(model, tft_output))
  return path
