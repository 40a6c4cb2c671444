"""Serving latency of the personalised model against the global model, on the dev server.

Builds (with `tfx_pipeline.testing`, seconds) or takes two model base paths, serves
both from one `serving.dev_server.DevServer` (models `limaml` and `global`) and
sends gRPC Predict requests of `--candidates` serialized tf.Examples, one member
scored against many items, interleaving three kinds so that they share the same
machine state:

* `personalised`: a member in the in-graph table of the personalised model;
* `cold_start`: an unknown member on the personalised model (in-graph Meta Block);
* `global`: the same requests on the global (Trainer export) model.

Prints one JSON object with p50/p99 latency (ms) and single-client throughput
(requests/s) per kind, and `personalised_vs_global_p50` (target <= 1.15) and
`cold_start_vs_global_p50` (target <= 1.3).

Usage: python benchmarks/serving.py [--requests 300] [--candidates 100] [--members 10000]
       [--personalised-base-path DIR --global-base-path DIR --member-id ID]
"""

import argparse
import json
import os
import sys
import tempfile
import time

# This file shares its name with the `serving` package it measures: import from the repo root.
_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
  sys.path[0] = os.path.dirname(_HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # pylint: disable=g-import-not-at-top
from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top

from serving import tensors  # pylint: disable=g-import-not-at-top
from limaml_keras import serving_contract
from tfx_pipeline.models import export  # pylint: disable=g-import-not-at-top

KNOWN_MEMBER = "7"
UNKNOWN_MEMBER = "999999999"


def build_models(root: str, members: int) -> dict:
  """Exports a personalised (`members` ids, incl. 7) and a global model as version 1 of each.

  Returns:
    `{"limaml": base path, "global": base path}` under `root`.
  """
  # pylint: disable=g-import-not-at-top
  from tfx_pipeline import testing
  tft_output = testing.transform_output(os.path.join(root, "transform"))
  model = testing.untrained_model(tft_output)
  member_ids = [KNOWN_MEMBER] + [str(100000 + i) for i in range(members - 1)]
  paths = {"limaml": os.path.join(root, "limaml"), "global": os.path.join(root, "global")}
  testing.personalized_model(model, tft_output, os.path.join(paths["limaml"], "1"), member_ids,
                             testing.embeddings(len(member_ids)))
  export.export_serving_model(model, tft_output, os.path.join(paths["global"], "1"))
  return paths


def candidate_examples(member_id: str, candidates: int, feature_spec=None) -> np.ndarray:
  """`candidates` serialized raw tf.Examples: one member, alternating items and years."""
  if feature_spec is None:
    # pylint: disable=g-import-not-at-top
    from tfx_pipeline import testing
    feature_spec = {k: v for k, v in testing.RAW_FEATURE_SPEC.items()
                    if k not in ("label", "timestamp")}
  rows = [{"member_id": member_id, "item_id": "xy"[i % 2], "age": 30.0, "year": 1990 + i % 30}
          for i in range(candidates)]
  return np.array([serving_contract.raw_example(r, feature_spec).SerializeToString() for r in rows],
                  dtype=object)


def predict_request(model_name: str, examples: np.ndarray) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.inputs[serving_contract.EXAMPLES].CopyFrom(tensors.to_tensor_proto(examples))
  return request


def percentiles_ms(seconds) -> dict:
  """p50/p99 (ms) and the sequential throughput of a list of latencies."""
  values = np.asarray(seconds) * 1000
  return {"p50_ms": round(float(np.percentile(values, 50)), 3),
          "p99_ms": round(float(np.percentile(values, 99)), 3),
          "throughput_rps": round(float(1000 / values.mean()), 1)}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--requests", type=int, default=300, help="timed requests per kind")
  parser.add_argument("--candidates", type=int, default=100)
  parser.add_argument("--members", type=int, default=10000, help="table size when building")
  parser.add_argument("--personalised-base-path")
  parser.add_argument("--global-base-path")
  parser.add_argument("--member-id", default=KNOWN_MEMBER,
                      help="a member in the personalised model's table")
  args = parser.parse_args(argv)
  if args.requests < 10 or args.candidates < 1:
    parser.error("--requests must be >= 10 and --candidates >= 1")
  if bool(args.personalised_base_path) != bool(args.global_base_path):
    parser.error("give both --personalised-base-path and --global-base-path, or neither")
  # pylint: disable=g-import-not-at-top
  import grpc
  from tensorflow_serving.apis import prediction_service_pb2_grpc
  from serving import dev_server

  with tempfile.TemporaryDirectory() as root:
    if args.personalised_base_path:
      paths = {"limaml": args.personalised_base_path, "global": args.global_base_path}
    else:
      paths = build_models(root, args.members)
    known = candidate_examples(args.member_id, args.candidates)
    requests = {
        "personalised": predict_request("limaml", known),
        "cold_start": predict_request("limaml", candidate_examples(UNKNOWN_MEMBER,
                                                                   args.candidates)),
        "global": predict_request("global", known)}
    with dev_server.DevServer(None, models=paths, grpc_port=0, rest_port=0) as server, \
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      personalised = stub.Predict(requests["personalised"], timeout=60).outputs["personalised"]
      if not all(tensors.from_tensor_proto(personalised)):
        raise SystemExit(f"member {args.member_id!r} is not in the personalised model's table")
      latencies = {kind: [] for kind in requests}
      for round_index in range(args.requests + 20):  # 20 untimed warm-up rounds
        for kind, request in requests.items():
          start = time.perf_counter()
          stub.Predict(request, timeout=60)
          if round_index >= 20:
            latencies[kind].append(time.perf_counter() - start)
  result = {kind: percentiles_ms(values) for kind, values in latencies.items()}
  result.update(
      candidates=args.candidates, requests_per_kind=args.requests,
      personalised_vs_global_p50=round(
          result["personalised"]["p50_ms"] / result["global"]["p50_ms"], 3),
      cold_start_vs_global_p50=round(
          result["cold_start"]["p50_ms"] / result["global"]["p50_ms"], 3))
  return result


if __name__ == "__main__":
  print(json.dumps(main()))
