"""Cost of the first training step in a process, with and without AutoGraph converting tf-keras.

Every process that trains, evaluates or exports a model (a Trainer, the
evaluation, a test) pays for tracing its `tf.function`s once; AutoGraph's
transpiling of the Python it traces is most of that. `limaml_keras.autograph_rules`
keeps AutoGraph out of the tf-keras engine. This script measures what that
saves: for each mode it runs one fresh process that builds every model kind
in turn (`--models`, the order a pipeline or evaluation trains them in) and
times its first `fit` step (trace + one step), a second one (no trace) and the
first `score_query` (trace + one call).

* `skip`: the package default, tf-keras not converted.
* `convert`: the rules taken out again after import (TensorFlow's stock rules).

Prints one JSON object: per mode and model the three times in seconds, per
mode the total, and `first_step_speedup` = convert total / skip total (same
run, same machine). Both modes must train the same weights:
`same_losses` compares the first step's losses.

Usage: python benchmarks/first_trace.py [--models global,id_embedding,limaml]
"""

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

MODES = ("skip", "convert")
DEFAULT_MODELS = "global,id_embedding,limaml"


def _seconds(fn):
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def measure(models):
  """In this process: the first-step, second-step and first-scoring seconds of each model."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from limaml_keras import model_config  # pylint: disable=g-import-not-at-top
  from limaml_keras import model_factory  # pylint: disable=g-import-not-at-top
  from limaml_keras import testing  # pylint: disable=g-import-not-at-top

  batch = testing.random_task_batch(num_tasks=8, support=5, query=3, num_items=50, seed=0)
  data = tf.data.Dataset.from_tensors(batch)
  out = {}
  for name in models:
    tf.keras.utils.set_random_seed(0)
    model = model_factory.build_model(model_config.ModelConfig(model=name), num_items=50,
                                      num_members=20)
    first, history = _seconds(lambda: model.fit(data, verbose=0))
    second, _ = _seconds(lambda: model.fit(data, verbose=0))
    scoring, _ = _seconds(lambda: tf.function(model.score_query)(batch))
    out[name] = {"first_step_s": round(first, 3), "second_step_s": round(second, 3),
                 "first_score_s": round(scoring, 3), "loss": float(history.history["loss"][0])}
  return out


def without_tf_keras_rules(rules):
  """AutoGraph's conversion `rules` less `limaml_keras.autograph_rules.RULES`."""
  from limaml_keras import autograph_rules  # pylint: disable=g-import-not-at-top
  return tuple(r for r in rules if r not in autograph_rules.RULES)


def child(mode, models):
  """One fresh process's measurement in `mode`."""
  from tensorflow.python.autograph.core import config  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  from limaml_keras import autograph_rules  # pylint: disable=g-import-not-at-top
  if mode == "convert":
    config.CONVERSION_RULES = without_tf_keras_rules(config.CONVERSION_RULES)
  if autograph_rules.skips_tf_keras() != (mode == "skip"):
    raise RuntimeError(f"mode {mode}: AutoGraph's rules did not change as expected")
  return measure(models)


def run(models):
  """Both modes, each in a fresh process; the JSON record."""
  record = {"models": list(models)}
  for mode in MODES:
    result = subprocess.run([sys.executable, __file__, "--child", mode, "--models",
                             ",".join(models)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
      raise RuntimeError(f"the {mode} process failed:\n{result.stderr[-3000:]}")
    record[mode] = json.loads(result.stdout.strip().splitlines()[-1])
    record[f"{mode}_total_s"] = round(sum(
        m["first_step_s"] + m["first_score_s"] for m in record[mode].values()), 3)
  record["first_step_speedup"] = round(record["convert_total_s"] / record["skip_total_s"], 2)
  record["same_losses"] = all(
      abs(record["skip"][m]["loss"] - record["convert"][m]["loss"]) < 1e-6 for m in models)
  return record


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--models", default=DEFAULT_MODELS,
                      help=f"comma-separated model kinds (default: {DEFAULT_MODELS})")
  parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  models = [m for m in args.models.split(",") if m]
  from limaml_keras import model_config  # pylint: disable=g-import-not-at-top
  unknown = sorted(set(models) - set(model_config.MODELS))
  if unknown or not models:
    parser.error(f"--models: unknown {unknown or models}; choose from {list(model_config.MODELS)}")
  if args.child:
    print(json.dumps(child(args.child, models)))
  else:
    print(json.dumps(run(models), indent=2))


if __name__ == "__main__":
  main()
