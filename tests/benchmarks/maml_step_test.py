"""`benchmarks/maml_step.py --jit`: the XLA-compiled MAML step computes what the plain one does.

Tolerance: 1e-5 absolute + 1e-4 relative on gradients and on weights after
three Adam steps (XLA fuses and reorders float32 sums; anything wrong in the
compiled inner loop or meta-gradient is off by far more).
"""

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras.model import GlobalModel, LiMAMLModel
from limaml_keras.testing import random_task_batch

from tests.benchmarks import scripts

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


bench = scripts.load("maml_step")


@pytest.fixture(scope="module")
def batch():
  return {k: tf.constant(v) for k, v in random_task_batch(
      num_tasks=16, support=6, query=4, member_dim=16, item_dim=16, context_dim=2,
      num_items=1000, seed=1).items()}


@pytest.mark.slow
def test_jit_meta_gradient_equals_plain(batch):
  grads = {}
  for jit in (False, True):
    model = bench.make(LiMAMLModel, inner_steps=2)
    grads[jit] = [tf.convert_to_tensor(g).numpy()  # Embedding gradients are IndexedSlices.
                  for g in bench.meta_gradient_fn(model, jit=jit)(batch)]
  assert len(grads[True]) == len(grads[False]) > 0
  for plain, compiled in zip(grads[False], grads[True]):
    np.testing.assert_allclose(compiled, plain, **TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("cls,kwargs", [(LiMAMLModel, {"inner_steps": 1}),
                                        (LiMAMLModel, {"inner_steps": 1, "first_order": True}),
                                        (GlobalModel, {})])
def test_jit_train_steps_give_the_same_weights(batch, cls, kwargs):
  weights = {}
  for jit in (False, True):
    model = bench.make(cls, **kwargs)
    step = bench.train_step_fn(model, jit)
    for _ in range(3):
      logs = step(batch)
    assert np.isfinite(float(logs["loss"]))
    weights[jit] = [w.numpy() for w in model.trainable_weights]
  for plain, compiled in zip(weights[False], weights[True]):
    np.testing.assert_allclose(compiled, plain, **TOLERANCE)
