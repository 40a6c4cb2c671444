"""The Trainer's tf.distribute strategies: selection, and equal training on 1 and 2 replicas.

The training checks run `distributed_run.py` in fresh processes (a logical
device split or a multi-worker server cannot be undone in a process) and
compare what LiMAML (second and first order), the global model and the
member-ID model learnt: weights after 8 SGD steps (2 epochs of 32 tasks,
global batch 8) and the scores of the reloaded SavedModels (the multi-worker run trains
the two models `MULTI_WORKER_MODELS` names). Tolerance: 1e-5
absolute + 1e-4 relative (replicas sum gradients in another order than one
device; a mis-scaled loss or regulariser is off by ~100%).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras import testing as keras_testing
from tfx_pipeline.components import task_records
from tfx_pipeline.models import distribution

RUN = os.path.join(os.path.dirname(__file__), "distributed_run.py")
NUM_TASKS = 32
ALL_MODELS = ("limaml", "limaml_first_order", "global", "id_embedding")
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


def test_split_custom_config_separates_strategy_and_vertex_keys():
  assert distribution.split_custom_config(None) == (distribution.AUTO, {})
  name, settings = distribution.split_custom_config(
      {"distribution": "mirrored", "epochs": 3, "ai_platform_training_args": {"project": "p"},
       "ai_platform_enable_vertex": True})
  assert (name, settings) == ("mirrored", {"epochs": 3})
  with pytest.raises(ValueError, match="must be one of"):
    distribution.split_custom_config({"distribution": "tpu"})


def _tf_config(workers, index=0, task_type="worker"):
  return {"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                   "task": {"type": task_type, "index": index}})}


def test_auto_is_multi_worker_only_with_a_cluster():
  assert distribution.resolve(distribution.AUTO, {}) == distribution.ONE_DEVICE
  assert distribution.resolve(distribution.AUTO, _tf_config(["a:1"])) == distribution.ONE_DEVICE
  assert distribution.resolve(distribution.AUTO, _tf_config(["a:1", "b:2"])) == (
      distribution.MULTI_WORKER)
  assert distribution.resolve(distribution.MIRRORED, {}) == distribution.MIRRORED
  assert distribution.training_tasks(
      {"TF_CONFIG": json.dumps({"cluster": {"chief": ["c:1"], "worker": ["w:1"], "ps": ["p:1"]}})}
  ) == 2


def test_bad_tf_config_and_missing_cluster_are_clear_errors():
  with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
    distribution.tf_config({"TF_CONFIG": "{cluster"})
  with pytest.raises(ValueError, match="must be a JSON object"):
    distribution.tf_config({"TF_CONFIG": "[1]"})
  with pytest.raises(ValueError, match="needs TF_CONFIG"):
    distribution.make_strategy(distribution.MULTI_WORKER, {})
  with pytest.raises(ValueError, match="must be one of"):
    distribution.make_strategy("parameter_server", {})


def test_one_device_writes_the_outputs_itself(tmp_path):
  strategy = distribution.make_strategy(distribution.ONE_DEVICE, {})
  assert strategy.num_replicas_in_sync == 1 and distribution.writes_outputs(strategy)
  assert distribution.worker_output_dir(str(tmp_path / "m"), strategy) == str(tmp_path / "m")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """32 tasks with varied support sizes; every fourth has no query (global vs local means)."""
  path = str(tmp_path_factory.mktemp("tasks") / "tasks.gz")
  batch = keras_testing.random_task_batch(NUM_TASKS, support=5, query=3, member_dim=3,
                                          item_dim=4, context_dim=2, num_items=50, seed=3)
  support_sizes = np.arange(NUM_TASKS) % 6
  query_sizes = np.where(np.arange(NUM_TASKS) % 4 == 1, 0, 1 + np.arange(NUM_TASKS) % 3)
  for side, sizes in ((tensor_layout.SUPPORT, support_sizes), (tensor_layout.QUERY, query_sizes)):
    length = batch[tensor_layout.side_key(side, tensor_layout.MASK)].shape[1]
    batch[tensor_layout.side_key(side, tensor_layout.MASK)] = (
        np.arange(length)[None, :] < sizes[:, None]).astype(np.float32)
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for t in range(NUM_TASKS):
      writer.write(task_records.encode({k: v[t] for k, v in batch.items()},
                                       f"member-{t}".encode(), int(support_sizes[t]),
                                       int(query_sizes[t])))
  return path


#: Trained across two worker processes: second-order MAML (the costly meta-gradient, also
#: saved and scored) and the member-ID model (its regulariser). Every model kind's loss
#: scaling is checked over two replicas by the MirroredStrategy run, which trains them all.
MULTI_WORKER_MODELS = ("limaml", "id_embedding")


def _start(strategy, records, out_dir, logical_cpus=1, env=None, models=ALL_MODELS):
  return subprocess.Popen(
      [sys.executable, RUN, strategy, records, str(out_dir), str(logical_cpus), ",".join(models)],
      env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def _finish(process, timeout=1800):
  output, _ = process.communicate(timeout=timeout)
  assert process.returncode == 0, output[-4000:]


def _assert_same_training(reference, other, models=ALL_MODELS):
  """`other` trained `models` as `reference` did (which may have trained more)."""
  keys = sorted(k for k in other.files if "/" in k)
  assert {k.split("/")[0] for k in keys} == set(models)
  assert keys == sorted(k for k in reference.files if k.split("/")[0] in models)
  assert any(k.endswith("/scores") for k in keys) and any("/history_loss" in k for k in keys)
  for key in keys:
    np.testing.assert_allclose(other[key], reference[key], err_msg=key, **TOLERANCE)


@pytest.fixture(scope="module")
def local_runs(records, tmp_path_factory):
  """One process, CPU split into 2 logical devices: default strategy, then MirroredStrategy."""
  out_dir = tmp_path_factory.mktemp("local")
  _finish(_start(f"{distribution.ONE_DEVICE},{distribution.MIRRORED}", records, out_dir,
                 logical_cpus=2))
  return {name: np.load(out_dir / f"local-0-{name}.npz")
          for name in (distribution.ONE_DEVICE, distribution.MIRRORED)}


@pytest.mark.slow
def test_mirrored_over_two_devices_equals_one_device(local_runs):
  """(a) MirroredStrategy on 2 logical CPUs vs one device, same global batches."""
  one, two = local_runs[distribution.ONE_DEVICE], local_runs[distribution.MIRRORED]
  assert (int(one["replicas"]), int(two["replicas"])) == (1, 2)
  _assert_same_training(one, two)


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.slow
def test_multi_worker_on_loopback_equals_one_process(records, local_runs, tmp_path):
  """(b) Two MultiWorkerMirroredStrategy workers (TF_CONFIG, loopback gRPC) vs one process."""
  workers = [f"localhost:{port}" for port in _free_ports(2)]
  processes = [_start(distribution.AUTO, records, tmp_path,
                      env={"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                    "task": {"type": "worker", "index": i}})},
                      models=MULTI_WORKER_MODELS)
               for i in range(2)]
  for process in processes:
    _finish(process)
  chief, worker = (np.load(tmp_path / f"worker-{i}-{distribution.AUTO}.npz") for i in range(2))
  assert (int(chief["replicas"]), int(worker["replicas"])) == (2, 2)
  for key in chief.files:  # All-reduced updates: the workers hold the very same weights.
    np.testing.assert_array_equal(worker[key], chief[key], err_msg=key)
  _assert_same_training(local_runs[distribution.ONE_DEVICE], chief, MULTI_WORKER_MODELS)
  # Worker 0 (no chief in the cluster) saved where TFX looks, worker 1 beside it.
  assert os.path.isdir(tmp_path / "saved-auto-limaml")
  assert os.path.isdir(tmp_path / ".saved-auto-limaml.worker-1")
