"""AutoGraph leaves the tf-keras library alone, as TensorFlow's own rules leave `keras` alone.

`tf.function` runs AutoGraph on the Python code it traces, recursively, except
for modules its conversion rules exclude. TensorFlow 2.16 excludes
`tensorflow` and `keras` but not `tf_keras`, the package `tf.keras` is with
`TF_USE_LEGACY_KERAS=1`; so the first trace of a training, evaluation or
serving function in a process transpiles Keras's own engine (`Layer.__call__`,
metrics, losses): on the models here the first training step of a process
took 27.3 s, 5.6 s with these rules (`benchmarks/first_trace.py`).

`tf_keras` is the code TensorFlow excluded as `keras` until 2.15, so it is
excluded the same way, with one exception: `tf_keras.src.engine.training`,
whose `fit`/`evaluate`/`predict` step functions call a model's `train_step`,
`test_step` and `predict_step` — user code, which must still be converted
(a custom `train_step` may branch on a tensor). Everything else AutoGraph
still converts by Keras's own hand: every layer's `call`, every metric's
`update_state` and `result`, every loss function. Importing this module
(`limaml_keras.layers` does) adds the rules once.
"""

from tensorflow.python.autograph.core import config as _autograph_config  # pylint: disable=g-direct-tensorflow-import

#: The module tree AutoGraph does not convert ...
TF_KERAS_MODULE = "tf_keras"
#: ... except this module, which calls the models' step methods.
TF_KERAS_TRAINING_MODULE = "tf_keras.src.engine.training"


#: The rules, ahead of AutoGraph's own: the first rule that names a module decides.
RULES = (_autograph_config.Convert(TF_KERAS_TRAINING_MODULE),
         _autograph_config.DoNotConvert(TF_KERAS_MODULE))


def skips_tf_keras() -> bool:
  """Whether AutoGraph's rules start with `RULES`."""
  return tuple(_autograph_config.CONVERSION_RULES[:len(RULES)]) == RULES


def skip_tf_keras() -> None:
  """Puts `RULES` ahead of AutoGraph's other rules (idempotent)."""
  if not skips_tf_keras():
    _autograph_config.CONVERSION_RULES = RULES + tuple(_autograph_config.CONVERSION_RULES)


skip_tf_keras()
