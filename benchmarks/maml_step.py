"""Cost of a MAML training step relative to a plain Keras step, and of vectorising over tasks.

Prints one JSON object. All ratios come from the same run, model sizes and examples:

* `second_order_vs_plain`: LiMAML step (k=1, second order) / plain step of the
  same model on the same support + query interactions (target <= 2.5).
* `first_order_vs_plain`: same with first-order MAML (target <= 1.5).
* `vectorised_speedup`: meta-gradient of T tasks computed one task at a time in
  a Python loop / computed in one vectorised call (T=64; target >= 10). The
  loop runs over at most `--loop-tasks` tasks and is scaled to T (its cost is
  linear in the tasks), so `--tasks 1024` stays affordable.
* `*_tasks_per_s`: tasks (members) per second of each training step.

`--jit` compiles every training step with XLA (`tf.function(jit_compile=True)`;
`jit_train_step`), which `tests/benchmarks/maml_step_test.py` checks against
the plain step.

Usage: python benchmarks/maml_step.py [--tasks 64|1024] [--jit] [--support 20] [--query 20]
       [--repeats 30] [--loop-tasks 64]
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from limaml_keras.layers import GlobalBlock, MetaBlock  # pylint: disable=g-import-not-at-top
from limaml_keras.model import GlobalModel, LiMAMLModel  # pylint: disable=g-import-not-at-top
from limaml_keras.testing import random_task_batch  # pylint: disable=g-import-not-at-top


def make(cls, **kwargs):
  tf.keras.utils.set_random_seed(0)
  model = cls(MetaBlock(hidden_units=[64], embedding_dim=16),
              GlobalBlock(num_items=1000, hidden_units=[64, 32]), **kwargs)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
  return model


def median_seconds(fn, repeats):
  fn()  # trace and warm up
  fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def train_step_fn(model, jit: bool = False):
  """`model.train_step` as a `tf.function`, XLA-compiled when `jit`."""
  return tf.function(model.train_step, jit_compile=jit)


def step_seconds(model, batch, repeats, jit=False):
  step = train_step_fn(model, jit)
  return median_seconds(lambda: [v.numpy() for v in step(batch).values()], repeats)


def meta_gradient_fn(model, jit: bool = False):
  """The meta-gradient of a batch's query loss w.r.t. every trainable weight (a `tf.function`)."""
  @tf.function(reduce_retracing=True, jit_compile=jit)
  def grads(batch):
    with tf.GradientTape() as tape:
      loss, _, _, _ = model._query_loss(batch, model.adapt_weights(batch))  # pylint: disable=protected-access
    return tape.gradient(loss, model.trainable_variables)
  return grads


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tasks", type=int, default=64)
  parser.add_argument("--support", type=int, default=20)
  parser.add_argument("--query", type=int, default=20)
  parser.add_argument("--repeats", type=int, default=30)
  parser.add_argument("--jit", action="store_true", help="XLA-compile the training steps")
  parser.add_argument("--loop-tasks", type=int, default=64,
                      help="tasks the per-task loop runs over (scaled to --tasks)")
  args = parser.parse_args()
  if min(args.tasks, args.support, args.query, args.repeats, args.loop_tasks) < 1:
    parser.error("--tasks, --support, --query, --repeats and --loop-tasks must be >= 1")
  batch = {k: tf.constant(v) for k, v in random_task_batch(
      num_tasks=args.tasks, support=args.support, query=args.query, member_dim=16, item_dim=16,
      context_dim=2, num_items=1000).items()}

  plain = step_seconds(make(GlobalModel), batch, args.repeats, args.jit)
  second = step_seconds(make(LiMAMLModel, inner_steps=1), batch, args.repeats, args.jit)
  first = step_seconds(make(LiMAMLModel, inner_steps=1, first_order=True), batch, args.repeats,
                       args.jit)

  model = make(LiMAMLModel, inner_steps=1)
  grads = meta_gradient_fn(model)
  vectorised = median_seconds(lambda: grads(batch)[0].numpy(), args.repeats)
  loop_tasks = min(args.loop_tasks, args.tasks)
  slices = [{k: v[t:t + 1] for k, v in batch.items()} for t in range(loop_tasks)]
  looped = median_seconds(lambda: [grads(s)[0].numpy() for s in slices],
                          max(3, args.repeats // 10)) * args.tasks / loop_tasks

  print(json.dumps({
      "tasks": args.tasks, "support": args.support, "query": args.query, "jit": args.jit,
      "devices": [d.name for d in tf.config.list_logical_devices()],
      "plain_step_ms": round(plain * 1e3, 3),
      "second_order_step_ms": round(second * 1e3, 3),
      "first_order_step_ms": round(first * 1e3, 3),
      "second_order_vs_plain": round(second / plain, 3),
      "first_order_vs_plain": round(first / plain, 3),
      "per_task_loop_ms": round(looped * 1e3, 3),
      "vectorised_ms": round(vectorised * 1e3, 3),
      "vectorised_speedup": round(looped / vectorised, 2),
      "plain_tasks_per_s": round(args.tasks / plain, 1),
      "second_order_tasks_per_s": round(args.tasks / second, 1),
      "first_order_tasks_per_s": round(args.tasks / first, 1),
  }))


if __name__ == "__main__":
  main()
