"""Trains LiMAML and the baselines under one `tf.distribute` strategy; saves what they learnt.

Run by `distribution_test.py` in a fresh process (the logical-device split
and the multi-worker gRPC server must not leak into other tests):

    python distributed_run.py STRATEGIES RECORDS OUT_DIR [LOGICAL_CPUS [MODELS]]

STRATEGIES: comma-separated `tfx_pipeline.models.distribution` names, trained
one after the other in this process (`auto` and `multi_worker` read
`TF_CONFIG`; a multi-worker strategy must come first). MODELS: comma-separated
names from `MODELS` (default: all of them). Each model trains through the Trainer's `train_model` (its
datasets, `BackupAndRestore`) with plain SGD, so a mis-scaled loss shows as a
different step (Adam would hide a constant factor), then is saved as a
SavedModel, reloaded, and scores a fixed interaction batch. Writes
`OUT_DIR/<task>-<strategy>.npz`: `<model>/weight_<i>` (trainable weights),
`<model>/history_<metric>` (per epoch) and `<model>/scores`.
"""

import os
import sys
import time
import types

START = time.time()

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from limaml_keras import layers
from limaml_keras import model as model_lib
from limaml_keras import tensor_layout
from tfx_pipeline.models import distribution
from tfx_pipeline.models import trainer
# pylint: enable=g-import-not-at-top

NUM_ITEMS = 50
NUM_MEMBERS = 40
MEMBER_DIM, ITEM_DIM, CONTEXT_DIM = 3, 4, 2
# What `train_model` reads of a ModelConfig.
CONFIG = types.SimpleNamespace(epochs=2, batch_size=8, seed=0)
MODELS = ("limaml", "limaml_first_order", "global", "id_embedding")
#: Models also saved, reloaded and scored (saving a subclassed Keras model traces for long).
SAVED = ("limaml",)


def make_model(name: str) -> model_lib.PersonalizedRanker:
  meta = layers.MetaBlock(hidden_units=[8], embedding_dim=4)
  global_block = layers.GlobalBlock(num_items=NUM_ITEMS, item_embedding_dim=4, hidden_units=[8])
  if name.startswith("limaml"):
    return model_lib.LiMAMLModel(meta, global_block, inner_steps=1, inner_lr=0.3,
                                 learn_inner_lr=True, use_history=True,
                                 first_order=name.endswith("first_order"))
  if name == "global":
    return model_lib.GlobalModel(meta, global_block)
  return model_lib.IdEmbeddingModel(meta, global_block, num_members=NUM_MEMBERS, id_l2=0.05)


def scoring_batch() -> dict:
  rng = np.random.default_rng(7)
  return {tensor_layout.MEMBER_ID: tf.constant(rng.integers(0, NUM_MEMBERS, 6)),
          tensor_layout.MEMBER_FEATURES: tf.constant(rng.normal(size=(6, MEMBER_DIM)), tf.float32),
          tensor_layout.ITEM_ID: tf.constant(rng.integers(0, NUM_ITEMS, 6)),
          tensor_layout.ITEM_FEATURES: tf.constant(rng.normal(size=(6, ITEM_DIM)), tf.float32),
          tensor_layout.CONTEXT_FEATURES: tf.constant(rng.normal(size=(6, CONTEXT_DIM)),
                                                      tf.float32)}


def train(strategy_name: str, records: str, out_dir: str, models=MODELS) -> None:
  """Trains `models` (saving and reloading those in `SAVED`) under one strategy; writes the `.npz`."""
  strategy = distribution.make_strategy(strategy_name)
  task = distribution.tf_config().get("task", {})
  name = f"{task.get('type', 'local')}-{task.get('index', 0)}-{strategy_name}"
  out = {"replicas": np.array(strategy.num_replicas_in_sync)}
  for model_name in models:
    tf.keras.utils.set_random_seed(CONFIG.seed)
    with strategy.scope():
      model = make_model(model_name)
      model.compile(optimizer=tf.keras.optimizers.SGD(0.5))
    backup_dir = os.path.join(out_dir, f"backup-{strategy_name}-{model_name}")
    history = trainer.train_model(model, [records], CONFIG, backup_dir)
    for i, weight in enumerate(model.trainable_weights):
      out[f"{model_name}/weight_{i}"] = weight.numpy()
    for key, values in history.history.items():  # Metrics aggregated over replicas.
      out[f"{model_name}/history_{key}"] = np.array(values)
    print(name, model_name, "trained", round(time.time() - START), flush=True)
    if model_name not in SAVED:
      continue
    saved = distribution.worker_output_dir(
        os.path.join(out_dir, f"saved-{strategy_name}-{model_name}"), strategy)
    model.save(saved, save_format="tf")
    loaded = tf.saved_model.load(saved)
    scores = loaded.signatures["serving_default"](**scoring_batch())
    out[f"{model_name}/scores"] = next(iter(scores.values())).numpy()
  np.savez(os.path.join(out_dir, f"{name}.npz"), **out)


def main(strategies: str, records: str, out_dir: str, logical_cpus: int = 1,
         models=MODELS) -> None:
  if logical_cpus > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus)
  for strategy_name in strategies.split(","):
    train(strategy_name, records, out_dir, models)


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 1,
       tuple(sys.argv[5].split(",")) if len(sys.argv) > 5 else MODELS)
