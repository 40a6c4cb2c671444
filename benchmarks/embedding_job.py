"""Throughput of the meta-embeddings Beam job against calling `adapt` in-process.

Prints one JSON object (same model, same task records, same batch size):

* `beam_members_per_s`: members / wall time of `tfx_pipeline.beam.embedding_job.run`
  on the DirectRunner (pipeline start, model load, reading, the shuffle into
  sorted output shards, adapting and writing TFRecord + Parquet included).
* `inprocess_members_per_s`: members / wall time of loading the SavedModel,
  reading the task records (`task_records.dataset`) and calling `adapt` on
  each batch in this process.
* `beam_vs_inprocess`: the ratio (target >= 0.7 at 200,000 members).

The model is a small LiMAML model exported with `tfx_pipeline.models.export` (a
stand-in Transform that passes transformed features through); the task
records are synthetic, in TaskGen's format. The tests reuse both helpers.

The job counts the records (a pass that only decompresses), parses them a
`tf.data` batch at a time into per-shard spill files, then sorts each
shard's members and adapts them in sorted batches (two `adapt` calls in
flight) while the previous shard is written, so its per-member Python work
is small and the DirectRunner's start-up (about a second) is amortised at a
realistic scale (default 20,000 members; the target is set at 200,000).

Each side runs `--repeats` times and the fastest run counts, as the
benchmark machine may be shared.

With `--rss-members 100000 1000000` it also runs the job alone in a fresh
process on that many members and reports the peak resident memory of the
process tree (`peak_rss_mb`, and `peak_rss_ratio`: largest / smallest count;
target <= 1.3: the job streams members, it does not hold them).

Usage: python benchmarks/embedding_job.py [--members 20000] [--batch-size 256] [--repeats 2]
       [--rss-members 100000 1000000]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras import testing
from limaml_keras.evaluation import methods
from tfx_pipeline.beam import embedding_job
from tfx_pipeline.models import export
from tfx_pipeline.components import task_records
# pylint: enable=g-import-not-at-top

MEMBER_DIM, ITEM_DIM, CONTEXT_DIM, NUM_ITEMS = 3, 4, 2, 20


class _PassThroughTransform(tf.keras.layers.Layer):
  """Stands in for the Transform layer: raw features are already transformed."""

  def call(self, inputs):  # pylint: disable=arguments-differ
    return dict(inputs)


class PassThroughTransformOutput:
  """The part of `tft.TFTransformOutput` that `export.make_signatures` uses."""

  def __init__(self, model):
    self._spec = model.interaction_spec()

  def raw_feature_spec(self):
    return {k: tf.io.FixedLenFeature(s.shape[1:], s.dtype) for k, s in self._spec.items()}

  def transform_features_layer(self):
    return _PassThroughTransform()


def tiny_model(seed: int = 0):
  """A small LiMAML model built (not trained: random weights suffice) on a task batch."""
  tf.keras.utils.set_random_seed(seed)
  hp = methods.Hyperparameters(embedding_dim=8, meta_hidden=(16,), global_hidden=(16,),
                               item_embedding_dim=4, inner_steps=2)
  model = methods.build_model("limaml", hp, num_items=NUM_ITEMS, num_members=1)
  model.adapt(testing.random_task_batch(2, 3, 1, MEMBER_DIM, ITEM_DIM, CONTEXT_DIM, NUM_ITEMS))
  return model


def export_tiny_model(path: str, seed: int = 0):
  """Exports `tiny_model(seed)` with the serving signatures; returns the Keras model."""
  model = tiny_model(seed)
  export.export_serving_model(model, PassThroughTransformOutput(model), path)
  return model


def write_task_records(path: str, num_members: int, max_support: int = 10,
                       seed: int = 0) -> dict:
  """Writes synthetic gzipped task records (TaskGen format) with varied support sizes.

  Member t has `t % (max_support + 1)` real support interactions (member 0 is
  cold start; every `max_support + 1`-th member is at the cap).

  Returns:
    The padded task batch written (numpy, task axis first) plus `member_key`
    and `support_size` arrays.
  """
  batch = testing.random_task_batch(num_members, max_support, 1, MEMBER_DIM, ITEM_DIM,
                                    CONTEXT_DIM, NUM_ITEMS, seed)
  sizes = np.arange(num_members) % (max_support + 1)
  mask = (np.arange(max_support)[None, :] < sizes[:, None]).astype(np.float32)
  batch[tensor_layout.side_key(tensor_layout.SUPPORT, tensor_layout.MASK)] = mask
  keys = np.array([f"member-{t}" for t in range(num_members)], dtype=object)
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for t in range(num_members):
      writer.write(task_records.encode({k: v[t] for k, v in batch.items()}, keys[t].encode(),
                                       int(sizes[t]), 1))
  return {**batch, task_records.MEMBER_KEY: keys, task_records.SUPPORT_SIZE: sizes}


def adapt_in_process(model_dir: str, pattern: str, batch_size: int) -> np.ndarray:
  """Meta embeddings `[N, d]` of the task records, `adapt` called in this process."""
  _, adapt = embedding_job.load_adapt(model_dir)
  task_format = task_records.infer_format(pattern)
  out = [adapt(**embedding_job.adapt_inputs(batch))[tensor_layout.META_EMBEDDING].numpy()
         for batch in task_records.dataset(pattern, task_format, batch_size)]
  return np.concatenate(out)


def _members_per_s(members: int, function, repeats: int) -> float:
  """Members per second of the fastest of `repeats` runs (the machine may be shared)."""
  best = float("inf")
  for _ in range(repeats):
    started = time.perf_counter()
    function()
    best = min(best, time.perf_counter() - started)
  return members / best


def job_peak_rss_mb(model_dir: str, root: str, members: int, batch_size: int) -> float:
  """Peak RSS (MB) of the job run alone, in a fresh process, on `members` synthetic members."""
  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from benchmarks.process_memory import PeakRss
  # pylint: enable=g-import-not-at-top
  tasks = os.path.join(root, f"rss-{members}.gz")
  write_task_records(tasks, members)
  process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--job-only", model_dir,
                              tasks, os.path.join(root, f"rss-out-{members}"),
                              "--batch-size", str(batch_size)])
  sampler = PeakRss(process.pid, interval_s=0.5)
  if process.wait():
    raise RuntimeError(f"the embedding job on {members} members failed ({process.returncode})")
  os.remove(tasks)
  return round(sampler.stop() / 2**20, 1)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--members", type=int, default=20000)
  parser.add_argument("--batch-size", type=int, default=256)
  parser.add_argument("--repeats", type=int, default=2,
                      help="runs of each side; the fastest counts (default: %(default)s)")
  parser.add_argument("--rss-members", type=int, nargs="*", default=[],
                      help="also measure the job's peak RSS at these member counts")
  parser.add_argument("--job-only", nargs=3, metavar=("MODEL", "TASKS", "OUTPUT"),
                      help=argparse.SUPPRESS)  # The child process of --rss-members.
  args = parser.parse_args()
  if args.job_only:
    embedding_job.run(*args.job_only, "bench", batch_size=args.batch_size)
    return
  if min([args.members, args.batch_size, args.repeats] + args.rss_members) < 1:
    parser.error("--members, --batch-size, --repeats and --rss-members must be >= 1")
  with tempfile.TemporaryDirectory() as root:
    model_dir = os.path.join(root, "model")
    export_tiny_model(model_dir)
    pattern = os.path.join(root, "tasks.gz")
    write_task_records(pattern, args.members)
    adapt_in_process(model_dir, pattern, args.batch_size)  # Warm TF's caches for both.
    inprocess = _members_per_s(
        args.members, lambda: adapt_in_process(model_dir, pattern, args.batch_size),
        args.repeats)
    outputs = iter(range(args.repeats))
    beam = _members_per_s(args.members, lambda: embedding_job.run(
        model_dir, pattern, os.path.join(root, f"out{next(outputs)}"), "bench",
        batch_size=args.batch_size), args.repeats)
    rss = {str(n): job_peak_rss_mb(model_dir, root, n, args.batch_size)
           for n in args.rss_members}
  out = {"members": args.members, "batch_size": args.batch_size, "repeats": args.repeats,
         "beam_members_per_s": round(beam, 1),
         "inprocess_members_per_s": round(inprocess, 1),
         "beam_vs_inprocess": round(beam / inprocess, 3)}
  if rss:
    counts = sorted(args.rss_members)
    out["peak_rss_mb"] = rss
    out["peak_rss_ratio"] = round(rss[str(counts[-1])] / rss[str(counts[0])], 3)
  print(json.dumps(out))


if __name__ == "__main__":
  main()
