"""`limaml_keras.autograph_rules`: AutoGraph skips tf-keras's engine, still converts user code."""

import tensorflow as tf
import tf_keras
from tensorflow.python.autograph.core import config  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.autograph.impl import conversion  # pylint: disable=g-direct-tensorflow-import

from limaml_keras import autograph_rules
from limaml_keras import layers


def test_importing_the_layers_adds_the_rule_once():
  assert autograph_rules.skips_tf_keras()
  before = config.CONVERSION_RULES
  autograph_rules.skip_tf_keras()
  assert config.CONVERSION_RULES == before
  assert str(before[0]) == "DoNotConvert rule for tf_keras"


def test_tf_keras_is_left_alone_and_this_package_is_converted():
  assert tf.keras.layers.Dense is tf_keras.layers.Dense  # TF_USE_LEGACY_KERAS=1
  assert conversion.is_allowlisted(tf_keras.layers.Dense.__call__)
  assert conversion.is_allowlisted(tf_keras.Model.fit)
  assert not conversion.is_allowlisted(layers.MetaBlock.call)


class _SignFlip(tf.keras.layers.Layer):
  """A layer whose `call` branches on a tensor: it needs AutoGraph."""

  def call(self, x):
    if tf.reduce_sum(x) > 0:
      return -x
    return x


def test_a_layer_call_with_tensor_control_flow_still_traces():
  # Keras converts every layer's `call` itself, in `Layer.__call__`.
  layer = _SignFlip()
  fn = tf.function(layer)
  assert fn(tf.constant([1.0, 2.0])).numpy().tolist() == [-1.0, -2.0]
  assert fn(tf.constant([-1.0, -2.0])).numpy().tolist() == [-1.0, -2.0]
