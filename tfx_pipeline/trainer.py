"""The Trainer components' `run_fn`: task records -> trained, exported model.

`custom_config` holds a `ModelConfig` dict (`tfx_pipeline.model_config`).
The function reads the TaskGen records of the `train` and `eval` splits as
task batches, fits the model (LiMAML, or the global baseline), evaluates it
on the evaluation-period tasks (adapting on each member's support when the
model adapts), writes `metrics.json` to the model-run directory and exports
the serving SavedModel (`tfx_pipeline.export`).
"""

import dataclasses
import json
import os

from absl import logging
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from limaml_keras import model as model_lib
from limaml_keras.evaluation import methods
from tfx_pipeline import export
from tfx_pipeline import model_config
from tfx_pipeline import preprocessing
from tfx_pipeline import task_records

METRICS_FILE = "metrics.json"


def build_model(config: model_config.ModelConfig, num_items: int,
                num_members: int) -> model_lib.PersonalizedRanker:
  """The compiled, unbuilt Keras model `config` describes.

  Args:
    config: the hyperparameters.
    num_items: item-id vocabulary size including the unknown id 0.
    num_members: member-id vocabulary size including the unknown id 0.

  Returns:
    The model; it builds on its first task batch.
  """
  fields = {f.name for f in dataclasses.fields(methods.Hyperparameters)}
  hyperparameters = methods.Hyperparameters(
      **{k: v for k, v in dataclasses.asdict(config).items() if k in fields})
  trained_as = config.model
  if config.model == model_config.LIMAML and config.first_order:
    trained_as = "limaml_first_order"
  return methods.build_model(trained_as, hyperparameters, num_items, num_members)


def _datasets(fn_args: tfx.components.FnArgs, config: model_config.ModelConfig):
  train_format = task_records.infer_format(fn_args.train_files)
  eval_format = task_records.infer_format(fn_args.eval_files)
  logging.info("Task records: train %s, eval %s", train_format, eval_format)
  train = task_records.dataset(fn_args.train_files, train_format, config.batch_size,
                               shuffle=True, seed=config.seed)
  evaluation = task_records.dataset(fn_args.eval_files, eval_format, config.batch_size)
  return train, evaluation


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """Trains the model `fn_args.custom_config` describes and exports it.

  Args:
    fn_args: TFX Trainer arguments; uses `train_files`, `eval_files`,
      `transform_output`, `custom_config`, `model_run_dir` and
      `serving_model_dir`.
  """
  config = model_config.ModelConfig.from_dict(fn_args.custom_config or {})
  logging.info("Training %s", config)
  tf.keras.utils.set_random_seed(config.seed)
  tft_output = tft.TFTransformOutput(fn_args.transform_output)
  train, evaluation = _datasets(fn_args, config)
  model = build_model(
      config, num_items=tft_output.vocabulary_size_by_name(preprocessing.ITEM_VOCABULARY) + 1,
      num_members=tft_output.vocabulary_size_by_name(preprocessing.MEMBER_VOCABULARY) + 1)
  history = model.fit(train, epochs=config.epochs, verbose=2)
  metrics = model.evaluate(evaluation, return_dict=True, verbose=0)
  summary = {"model": config.model,
             "eval": {k: float(v) for k, v in metrics.items()},
             "train": {k: float(v[-1]) for k, v in history.history.items()},
             "config": config.to_dict()}
  logging.info("Evaluation-period query metrics of %s: %s", config.model, summary["eval"])
  tf.io.gfile.makedirs(fn_args.model_run_dir)
  with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, METRICS_FILE), "w") as f:
    json.dump(summary, f, indent=2)
  export.export_serving_model(model, tft_output, fn_args.serving_model_dir)
