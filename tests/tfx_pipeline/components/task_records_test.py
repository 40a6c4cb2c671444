"""Tests of the task-record format: encode, infer the format, read back as task batches."""

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras import testing
from tfx_pipeline.components import task_records


def _write(path, records):
  with tf.io.TFRecordWriter(str(path), "GZIP") as writer:
    for record in records:
      writer.write(record)


@pytest.mark.parametrize("context_dim", [2, 0])
def test_round_trip(tmp_path, context_dim):
  batch = testing.random_task_batch(num_tasks=3, support=4, query=2, member_dim=3, item_dim=5,
                                    context_dim=context_dim, seed=1)
  records = [task_records.encode({k: v[t] for k, v in batch.items()}, f"m{t}".encode(), 4, 2)
             for t in range(3)]
  _write(tmp_path / "tasks.gz", records)
  task_format = task_records.infer_format(str(tmp_path / "*.gz"))
  assert task_format == task_records.TaskFormat(3, 5, context_dim, 4, 2)
  [read] = list(task_records.dataset(str(tmp_path / "*.gz"), task_format, batch_size=8))
  assert set(read) == set(tensor_layout.task_keys())
  for key in tensor_layout.task_keys():
    np.testing.assert_allclose(read[key].numpy(), batch[key], err_msg=key)
    assert read[key].dtype == (tf.int64 if "_id" in key else tf.float32)


def test_shuffled_batches_cover_every_task(tmp_path):
  batch = testing.random_task_batch(num_tasks=10, support=2, query=1, seed=2)
  _write(tmp_path / "tasks.gz", [task_records.encode({k: v[t] for k, v in batch.items()},
                                                     b"m", 2, 1) for t in range(10)])
  task_format = task_records.infer_format([str(tmp_path / "tasks.gz")])
  ids = np.concatenate([b[tensor_layout.MEMBER_ID].numpy() for b in task_records.dataset(
      str(tmp_path / "tasks.gz"), task_format, batch_size=4, shuffle=True, seed=3)])
  assert sorted(ids) == sorted(batch[tensor_layout.MEMBER_ID])


def test_no_files_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no task record files"):
    task_records.infer_format(str(tmp_path / "*.gz"))
