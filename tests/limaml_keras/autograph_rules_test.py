"""`limaml_keras.autograph_rules`: AutoGraph skips tf-keras's engine, still converts user code."""

import numpy as np
import tensorflow as tf
import tf_keras
from tensorflow.python.autograph.core import config  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.autograph.impl import conversion  # pylint: disable=g-direct-tensorflow-import

from limaml_keras import autograph_rules
from limaml_keras import layers


def test_importing_the_layers_adds_the_rules_once():
  assert autograph_rules.skips_tf_keras()
  before = config.CONVERSION_RULES
  autograph_rules.skip_tf_keras()
  assert config.CONVERSION_RULES == before
  assert [str(r) for r in before[:2]] == ["Convert rule for tf_keras.src.engine.training",
                                          "DoNotConvert rule for tf_keras"]


def test_tf_keras_is_left_alone_but_its_step_functions_and_this_package_are_converted():
  assert tf.keras.layers.Dense is tf_keras.layers.Dense  # TF_USE_LEGACY_KERAS=1
  assert conversion.is_allowlisted(tf_keras.layers.Dense.__call__)
  assert conversion.is_allowlisted(tf_keras.metrics.AUC.update_state)
  assert not conversion.is_allowlisted(tf_keras.Model.make_train_function)
  assert not conversion.is_allowlisted(layers.MetaBlock.call)


class _SignFlip(tf.keras.layers.Layer):
  """A layer whose `call` branches on a tensor: it needs AutoGraph."""

  def call(self, x):
    if tf.reduce_sum(x) > 0:
      return -x
    return x


def test_a_layer_call_with_tensor_control_flow_still_traces():
  # Keras converts every layer's `call` itself, in `Layer.__call__`.
  fn = tf.function(_SignFlip())
  assert fn(tf.constant([1.0, 2.0])).numpy().tolist() == [-1.0, -2.0]
  assert fn(tf.constant([-1.0, -2.0])).numpy().tolist() == [-1.0, -2.0]


class _HalvedLossModel(tf.keras.Model):
  """A user's `train_step` that branches on a tensor: `fit` must still convert it."""

  def __init__(self):
    super().__init__()
    self.dense = tf.keras.layers.Dense(1, kernel_initializer="zeros")

  def call(self, x):
    return self.dense(x)

  def train_step(self, data):
    x, y = data
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean((self(x) - y) ** 2)
      if loss > 1.0:
        loss = loss * 0.5
    grads = tape.gradient(loss, self.trainable_variables)
    self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
    return {"loss": loss}


def test_a_user_train_step_with_tensor_control_flow_still_fits():
  model = _HalvedLossModel()
  model.compile(optimizer=tf.keras.optimizers.SGD(0.0))
  x, y = np.ones((4, 2), np.float32), np.full((4, 1), 2.0, np.float32)
  # Zero weights predict 0: squared error 4 > 1, halved to 2 by the tensor branch.
  assert model.fit(x, y, verbose=0).history["loss"] == [2.0]
