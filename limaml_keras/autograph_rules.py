"""AutoGraph leaves the tf-keras library alone, as TensorFlow's own rules leave `keras` alone.

`tf.function` runs AutoGraph on the Python code it traces, recursively, except
for modules its conversion rules exclude. TensorFlow 2.16 excludes
`tensorflow` and `keras` but not `tf_keras`, the package `tf.keras` is with
`TF_USE_LEGACY_KERAS=1`; so the first trace of a training, evaluation or
serving function in a process transpiles Keras's own engine (`Layer.__call__`,
metrics, `fit`'s step functions): on the models here the first training step
of a process took 26.7 s, 3.0 s without it (`benchmarks/first_trace.py`).

`tf_keras` is the code TensorFlow excluded as `keras` until 2.15, so it is
excluded the same way. What AutoGraph still converts: the function handed to
`tf.function`, the code of this package it calls, and every layer's `call`
(Keras converts those itself, in `Layer.__call__`). Importing this module
(`limaml_keras.layers` does) adds the rule once.
"""

from tensorflow.python.autograph.core import config as _autograph_config  # pylint: disable=g-direct-tensorflow-import

#: The module tree AutoGraph does not convert.
TF_KERAS_MODULE = "tf_keras"


def skips_tf_keras() -> bool:
  """Whether AutoGraph's rules leave `tf_keras` unconverted."""
  return any(isinstance(rule, _autograph_config.DoNotConvert) and rule.matches(TF_KERAS_MODULE)
             for rule in _autograph_config.CONVERSION_RULES)


def skip_tf_keras() -> None:
  """Adds a `DoNotConvert("tf_keras")` rule ahead of AutoGraph's others (idempotent)."""
  if not skips_tf_keras():
    _autograph_config.CONVERSION_RULES = (
        (_autograph_config.DoNotConvert(TF_KERAS_MODULE),) +
        tuple(_autograph_config.CONVERSION_RULES))


skip_tf_keras()
