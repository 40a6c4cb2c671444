"""Bounded load test of the dev server on loopback, with a version swap in the middle.

Serves a personalised model (built with `tfx_pipeline.testing`, or
`--model-base-path`), runs `--clients` concurrent clients (a fifth of them over
REST, the rest over gRPC) for `--duration-s` seconds sending Predict requests of
`--candidates` examples, and halfway through pushes a new version (copy to a
temp dir + atomic rename, as the Pusher does). Prints one JSON object:
`throughput_rps`, `p50_ms`, `p99_ms`, `requests`, `failed_requests` (target 0),
`versions_served` (both versions must appear) and `swap_s` (push to first
answer from the new version).

Usage: python benchmarks/load.py [--clients 50] [--duration-s 30] [--candidates 100]
       [--model-base-path DIR]
"""

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
  sys.path[0] = os.path.dirname(_HERE)  # `benchmarks/serving.py` would shadow `serving`
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import requests  # pylint: disable=g-import-not-at-top
from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top

from benchmarks import serving as serving_benchmark  # pylint: disable=g-import-not-at-top
from serving import dev_server  # pylint: disable=g-import-not-at-top


def _latest_version(base_path: str) -> int:
  versions = [int(v) for v in os.listdir(base_path) if v.isdigit()]
  if not versions:
    raise SystemExit(f"no version directory in {base_path}")
  return max(versions)


def push_copy(base_path: str, source_version: int, version: int) -> None:
  """Pushes a copy of a version as `version`: copy to a hidden temp dir, then rename."""
  scratch = os.path.join(base_path, f".push-{version}")
  shutil.copytree(os.path.join(base_path, str(source_version)), scratch)
  os.rename(scratch, os.path.join(base_path, str(version)))


class _Client(threading.Thread):
  """Sends requests until `stop`; records latencies, failures and versions served."""

  def __init__(self, server, examples, rest: bool, stop: threading.Event):
    super().__init__(daemon=True)
    self.latencies, self.failures, self.versions = [], [], {}
    self._stop_event, self._rest, self._server = stop, rest, server
    self._request = serving_benchmark.predict_request("limaml", examples)
    self._body = {"instances": [{"b64": base64.b64encode(e).decode()} for e in examples]}

  def run(self):
    if self._rest:
      with requests.Session() as session:
        url = f"http://127.0.0.1:{self._server.rest_port}/v1/models/limaml:predict"
        self._loop(lambda: self._rest_call(session, url))
    else:
      with grpc.insecure_channel(f"127.0.0.1:{self._server.grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        self._loop(lambda: stub.Predict(self._request, timeout=60).model_spec.version.value)

  def _rest_call(self, session, url):
    reply = session.post(url, json=self._body, timeout=60)
    reply.raise_for_status()
    return None  # the REST reply does not carry the version

  def _loop(self, call):
    while not self._stop_event.is_set():
      start = time.perf_counter()
      try:
        version = call()
      except Exception as e:  # pylint: disable=broad-except  (count every failure)
        self.failures.append(f"{type(e).__name__}: {str(e)[:200]}")
        continue
      done = time.perf_counter()
      self.latencies.append(done - start)
      if version is not None:
        self.versions.setdefault(version, done)


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--clients", type=int, default=50)
  parser.add_argument("--duration-s", type=float, default=30.0)
  parser.add_argument("--candidates", type=int, default=100)
  parser.add_argument("--model-base-path",
                      help="a base path with at least one version (a copy is pushed into it)")
  args = parser.parse_args(argv)
  if args.clients < 1 or args.duration_s <= 0 or args.candidates < 1:
    parser.error("--clients, --duration-s and --candidates must be positive")
  with tempfile.TemporaryDirectory() as root:
    base = args.model_base_path or serving_benchmark.build_models(root, 1000)["limaml"]
    current = _latest_version(base)
    examples = serving_benchmark.candidate_examples(serving_benchmark.KNOWN_MEMBER,
                                                    args.candidates)
    stop = threading.Event()
    with dev_server.DevServer(base, grpc_port=0, rest_port=0, poll_interval_s=0.5) as server:
      clients = [_Client(server, examples, rest=i % 5 == 4, stop=stop)
                 for i in range(args.clients)]
      start = time.perf_counter()
      for client in clients:
        client.start()
      time.sleep(args.duration_s / 2)
      pushed = time.perf_counter()
      push_copy(base, current, current + 1)
      time.sleep(args.duration_s / 2)
      stop.set()
      for client in clients:
        client.join(timeout=120)
      elapsed = time.perf_counter() - start
  latencies = np.array([t for c in clients for t in c.latencies]) * 1000
  failures = [f for c in clients for f in c.failures]
  first_new = [c.versions[current + 1] for c in clients if current + 1 in c.versions]
  return {
      "clients": args.clients, "duration_s": round(elapsed, 1), "candidates": args.candidates,
      "requests": int(latencies.size), "failed_requests": len(failures),
      "throughput_rps": round(latencies.size / elapsed, 1),
      "p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies.size else None,
      "p99_ms": round(float(np.percentile(latencies, 99)), 2) if latencies.size else None,
      "versions_served": sorted({v for c in clients for v in c.versions}),
      "swap_s": round(min(first_new) - pushed, 2) if first_new else None,
      "first_failures": failures[:3]}


if __name__ == "__main__":
  print(json.dumps(main()))
