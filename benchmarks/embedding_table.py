"""Cost of the personalised SavedModel's in-graph member -> meta embedding table.

Builds the table `tfx_pipeline.models.personalized_model` exports (member ids as a
vocabulary asset initialising a `StaticHashTable`, embeddings as a variable
`[M + 1, d]`) for M random members, saves it as a SavedModel, loads it with the
TF1 session loader as TF Serving does, and looks ids up through its signature.
Prints one JSON object:

* `build_s`: write the id asset + create the table and the variable;
* `save_s`: `tf.saved_model.save`;
* `load_s`: session loader (table initialised from the asset, variable restored);
* `lookup_ms`: median `session.run` of the signature on `--lookups` ids (90 % hits);
* `savedmodel_mb`, `graph_mb`: size of the SavedModel directory, and of `saved_model.pb`.

Usage: python benchmarks/embedding_table.py [--members 1000000] [--dim 16] [--lookups 1000]
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

from limaml_keras import serving_contract  # pylint: disable=g-import-not-at-top
from limaml_keras import tensor_layout  # pylint: disable=g-import-not-at-top
from tfx_pipeline.models import personalized_model as pm  # pylint: disable=g-import-not-at-top


def _timed(fn):
  start = time.perf_counter()
  result = fn()
  return result, time.perf_counter() - start


def _directory_mb(path):
  sizes = [os.path.getsize(os.path.join(root, name))
           for root, _, names in os.walk(path) for name in names]
  return sum(sizes) / 2**20


def _lookup_ms(path, requests, repeats):
  """Loads the SavedModel at `path`; returns (load seconds, median lookup ms, last output)."""
  with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph, load_s = _timed(
        lambda: tf.compat.v1.saved_model.loader.load(session, ["serve"], path))
    signature = meta_graph.signature_def["serving_default"]
    fetches = {k: v.name for k, v in signature.outputs.items()}
    feed_name = signature.inputs[pm.MEMBER_ID_INPUT].name
    times = []
    for ids in requests:
      out, seconds = _timed(lambda ids=ids: session.run(fetches, {feed_name: ids}))
      times.append(seconds)
  return load_s, 1000 * float(np.median(times[1:])), out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--members", type=int, default=1_000_000)
  parser.add_argument("--dim", type=int, default=16)
  parser.add_argument("--lookups", type=int, default=1000)
  parser.add_argument("--repeats", type=int, default=50)
  args = parser.parse_args()
  for flag in ("members", "dim", "lookups", "repeats"):
    if getattr(args, flag) < 1:
      parser.error(f"--{flag} must be >= 1, got {getattr(args, flag)}")
  rng = np.random.default_rng(0)
  member_ids = [f"member-{i}" for i in range(args.members)]
  embeddings = rng.normal(size=[args.members, args.dim]).astype(np.float32)
  requests = []
  for _ in range(args.repeats + 1):
    picks = rng.integers(0, int(args.members / 0.9), size=args.lookups)  # ~10 % unknown.
    requests.append(np.array([f"member-{i}".encode() for i in picks], dtype=object))
  with tempfile.TemporaryDirectory() as scratch:
    table, build_s = _timed(lambda: pm.MemberEmbeddingTable(
        pm.write_member_ids(member_ids, scratch), embeddings))
    path = os.path.join(scratch, "model", "1")
    _, save_s = _timed(lambda: tf.saved_model.save(table, path,
                                                   signatures=pm.table_signature(table)))
    load_s, lookup_ms, out = _lookup_ms(path, requests, args.repeats)
    hits = np.array([int(i.decode().split("-")[1]) < args.members for i in requests[-1]])
    assert (out[serving_contract.PERSONALISED] == hits).all()
    rows = [int(i.decode().split("-")[1]) for i in requests[-1][hits]]
    np.testing.assert_array_equal(out[tensor_layout.META_EMBEDDING][hits], embeddings[rows])
    print(json.dumps({
        "members": args.members, "dim": args.dim, "lookups": args.lookups,
        "build_s": round(build_s, 3), "save_s": round(save_s, 3), "load_s": round(load_s, 3),
        "lookup_ms": round(lookup_ms, 3),
        "savedmodel_mb": round(_directory_mb(path), 2),
        "graph_mb": round(os.path.getsize(os.path.join(path, "saved_model.pb")) / 2**20, 3),
    }))


if __name__ == "__main__":
  main()
