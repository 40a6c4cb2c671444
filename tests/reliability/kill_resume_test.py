"""A Trainer process killed with SIGKILL mid-epoch resumes from its last backup.

The killed run is a real separate process (`os.kill(os.getpid(), SIGKILL)`
after a batch, no Python clean-up); the resumed run continues from the
`BackupAndRestore` state it left and must end where an uninterrupted run ends.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import testing
from limaml_keras import model_config
from limaml_keras import model_factory
from tfx_pipeline.components import task_records
from tfx_pipeline.models import trainer

NUM_TASKS, NUM_ITEMS, BACKUP_EVERY = 22, 10, 2
CONFIG = model_config.ModelConfig(epochs=2, batch_size=4, learning_rate=1e-2, embedding_dim=4,
                                  meta_hidden=(8,), global_hidden=(8,), item_embedding_dim=4,
                                  seed=7)

_KILLED_RUN = textwrap.dedent("""
    import json, os, signal, sys
    import tensorflow as tf
    from limaml_keras import model_config
    from limaml_keras import model_factory
    from tfx_pipeline.models import trainer
    config = model_config.ModelConfig.from_dict(json.loads(sys.argv[1]))
    files, backup_dir, kill_after = json.loads(sys.argv[2]), sys.argv[3], int(sys.argv[4])

    class Kill(tf.keras.callbacks.Callback):
      seen = 0
      def on_train_batch_end(self, batch, logs=None):
        Kill.seen += 1
        if Kill.seen == kill_after:
          os.kill(os.getpid(), signal.SIGKILL)

    tf.keras.utils.set_random_seed(config.seed)
    model = model_factory.build_model(config, num_items=int(sys.argv[5]), num_members=int(sys.argv[6]))
    trainer.train_model(model, files, config, backup_dir, backup_every=%d, callbacks=[Kill()])
""" % BACKUP_EVERY)


@pytest.fixture(scope="module")
def train_files(tmp_path_factory):
  batch = testing.random_task_batch(num_tasks=NUM_TASKS, support=4, query=3, num_items=NUM_ITEMS,
                                    seed=11)
  path = str(tmp_path_factory.mktemp("tasks") / "tasks.gz")
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for t in range(NUM_TASKS):
      writer.write(task_records.encode({k: v[t] for k, v in batch.items()}, f"m{t}".encode(),
                                       4, 3))
  return [path]


def _model():
  tf.keras.utils.set_random_seed(CONFIG.seed)  # As run_fn does.
  return model_factory.build_model(CONFIG, num_items=NUM_ITEMS, num_members=NUM_TASKS + 1)


def _state(model):
  return [v.numpy() for v in model.trainable_weights + model.optimizer.variables]


@pytest.mark.slow
def test_sigkilled_trainer_resumes_and_matches_an_uninterrupted_run(tmp_path, train_files):
  backup_dir = str(tmp_path / "backup")
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1",
         "PYTHONWARNINGS": "ignore"}
  # 6 steps an epoch: backups after batches 2, 4, 6 and 8; killed after batch 9.
  killed = subprocess.run(
      [sys.executable, "-c", _KILLED_RUN, json.dumps(CONFIG.to_dict()), json.dumps(train_files),
       backup_dir, "9", str(NUM_ITEMS), str(NUM_TASKS + 1)],
      env=env, capture_output=True, text=True, timeout=300, check=False)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert trainer.resume_position(backup_dir, 6) == (1, 2)

  resumed = _model()
  history = trainer.train_model(resumed, train_files, CONFIG, backup_dir,
                                backup_every=BACKUP_EVERY)
  assert len(history.history["loss"]) == 1  # Only the interrupted epoch was left.
  uninterrupted = _model()
  trainer.train_model(uninterrupted, train_files, CONFIG, str(tmp_path / "clean"),
                      backup_every=BACKUP_EVERY)
  assert int(resumed.optimizer.iterations) == int(uninterrupted.optimizer.iterations) == 12
  for got, expected in zip(_state(resumed), _state(uninterrupted)):
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
