"""Idempotence of training: two fresh processes, same task records and config -> same bytes.

Each run is a new Python process (nothing shared but the files), as a TFX
rerun is. It trains both Trainers' models (LiMAML, then the global baseline
as `BaselineTrainer` does, in the order the pipeline may pick; the second
run trains them in the other order) with `trainer.train_model` on the
same task records, spread over several files; the second run reads them in
another order over other files, as after a TaskGen rerun, whose Beam job
writes the same set of records in an order that varies. It exports the LiMAML model, computes the
meta embeddings (of the first layout's records) with the embedding job's building blocks
(`embedding_job.load_adapt` / `adapt_inputs`) and reports checksums of the
exported variables, of each trained model's variables and of the
embeddings. The checksums must match exactly: no tolerance.
"""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import model_config
from limaml_keras import model_factory

from tests.benchmarks import scripts

# Two fresh interpreters importing TensorFlow + TFX: about 80 s on 2 shared cores.
pytestmark = pytest.mark.slow

_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NUM_MEMBERS, NUM_FILES = 60, 3
CONFIG = model_config.ModelConfig(epochs=2, batch_size=8, learning_rate=1e-2, embedding_dim=4,
                                  meta_hidden=(8,), global_hidden=(8,), item_embedding_dim=4,
                                  seed=7)

# Runs in a fresh interpreter: argv = [training records dir, output dir, models in training
# order, repository root, config JSON, embedding records dir].
_RUN = r"""
import hashlib, importlib.util, json, os, sys
import numpy as np
import tensorflow as tf
from tfx_pipeline.models import export
from limaml_keras import model_config
from limaml_keras import model_factory
from tfx_pipeline.models import trainer

records, out, order = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
spec = importlib.util.spec_from_file_location("bench", os.path.join(sys.argv[4], "benchmarks",
                                              "embedding_job.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

def digest(arrays):
  h = hashlib.sha256()
  for a in arrays:
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()

base = model_config.ModelConfig.from_dict(json.loads(sys.argv[5]))
configs = {model_config.LIMAML: base, model_config.GLOBAL: base.baseline()}
pattern = os.path.join(records, "*.gz")
embedding_pattern = os.path.join(sys.argv[6], "*.gz")
result = {}
for name in order:
  config = configs[name]
  tf.keras.utils.set_random_seed(config.seed)  # As run_fn does.
  model = model_factory.build_model(config, num_items=bench.NUM_ITEMS, num_members=1)
  trainer.train_model(model, [pattern], config, os.path.join(out, "backup-" + name))
  result[name] = digest([v.numpy() for v in model.weights + model.optimizer.variables])
  if name == model_config.LIMAML:
    exported = os.path.join(out, "serving")
    export.export_serving_model(model, bench.PassThroughTransformOutput(model), exported)
    reader = tf.train.load_checkpoint(os.path.join(exported, "variables", "variables"))
    # The object graph names layers by a per-process counter; it holds no weight.
    names = sorted(n for n in reader.get_variable_to_shape_map()
                   if n != "_CHECKPOINTABLE_OBJECT_GRAPH")
    result["exported"] = digest([reader.get_tensor(n) for n in names])
    result["embeddings"] = digest([bench.adapt_in_process(exported, embedding_pattern,
                                                                batch_size=16)])
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """Two directories holding the same task records: NUM_FILES files, then shuffled into 2."""
  bench = scripts.load("embedding_job")  # its task-record writer and stand-in Transform
  first = tmp_path_factory.mktemp("tasks")
  for shard in range(NUM_FILES):
    bench.write_task_records(str(first / f"tasks-{shard:05d}-of-{NUM_FILES:05d}.gz"),
                             NUM_MEMBERS // NUM_FILES, max_support=4, seed=shard)
  serialized = list(tf.data.TFRecordDataset(sorted(glob.glob(str(first / "*.gz"))),
                                            compression_type="GZIP").as_numpy_iterator())
  assert len(set(serialized)) == NUM_MEMBERS
  reordered = [serialized[i] for i in np.random.default_rng(1).permutation(NUM_MEMBERS)]
  second = tmp_path_factory.mktemp("tasks_reordered")
  for shard in range(2):
    with tf.io.TFRecordWriter(str(second / f"tasks-{shard}.gz"), "GZIP") as writer:
      for record in reordered[shard::2]:
        writer.write(record)
  return str(first), str(second)


def _start_fresh(records_dir, out, order, embedding_records_dir):
  """Starts `_RUN` in a new interpreter; `_result` waits for it."""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_USE_LEGACY_KERAS": "1",
         "PYTHONPATH": os.pathsep.join([_ROOT, os.environ.get("PYTHONPATH", "")])}
  return subprocess.Popen(
      [sys.executable, "-c", _RUN, records_dir, out, ",".join(order), _ROOT,
       json.dumps(CONFIG.to_dict()), embedding_records_dir],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=_ROOT)


def _result(process):
  stdout, stderr = process.communicate(timeout=300)
  assert process.returncode == 0, stderr[-3000:]
  line = [l for l in stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def reruns(records, tmp_path_factory):
  order = [model_config.LIMAML, model_config.GLOBAL]
  # Concurrent: the processes share nothing but the input files.
  first, second = records
  runs = [_start_fresh(first, str(tmp_path_factory.mktemp("first")), order, first),
          _start_fresh(second, str(tmp_path_factory.mktemp("second")), order[::-1], first)]
  return tuple(_result(run) for run in runs)


def test_reruns_in_fresh_processes_train_identical_models(reruns):
  first, second = reruns
  assert first[model_config.LIMAML] == second[model_config.LIMAML]
  assert first[model_config.GLOBAL] == second[model_config.GLOBAL]
  assert first[model_config.LIMAML] != first[model_config.GLOBAL]


def test_reruns_export_identical_variables_and_embeddings(reruns):
  first, second = reruns
  assert first["exported"] == second["exported"]
  assert first["embeddings"] == second["embeddings"]
