"""Bounded adversarial run against the dev server on loopback, under legitimate load.

Builds a tiny personalised model (`tfx_pipeline.testing`, seconds), serves it
from a dev server in a child process (`serving.server_process`, so its peak RSS
and threads are measured from outside) and keeps legitimate clients (gRPC and
REST) predicting for two known members while the scenarios of `SCENARIOS` run
one after the other:

* `oversized_shapes`: concurrent 38-byte Predict requests declaring 2^26 strings;
* `stalled_uploads`: three times the REST connection cap of uploads that stop
  sending mid-body;
* `slow_copy`: a version written in place, its member table in slow pieces;
* `version_removal`: the serving version removed, then every version, then one
  restored by an atomic rename;
* then, apart from the server, `concurrent_refreshes`: `--refreshes` (2) `limaml
  embeddings refresh` processes at once on one base path
  (`benchmarks/refresh_race.py`).

Prints one JSON object: `server_peak_rss_growth_mb` (peak RSS after the
scenarios minus before them), `requests_failed` (legitimate requests that
failed, expected NOT_FOUNDs while no version exists excluded),
`wrong_versions_served` (answers from a half-written version, detected by a
known member scored as cold start, or to a request sent after its version was reported
removed), `updates_lost` (refreshed members missing from the newest version),
`requests_ok` and per-scenario `scenarios` details. All targets: 0
and the growth under 100 MB.

A scenario is a function `(Abuse) -> dict` appended to `SCENARIOS`.

Usage: python benchmarks/abuse.py [--members 1000] [--rest-timeout-s 2]
"""

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List

_HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or ".") == _HERE:
  sys.path[0] = os.path.dirname(_HERE)  # `benchmarks/serving.py` would shadow `serving`
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import requests  # pylint: disable=g-import-not-at-top
from tensorflow.core.framework import tensor_pb2  # pylint: disable=g-import-not-at-top
from tensorflow.core.framework import types_pb2  # pylint: disable=g-import-not-at-top
from tensorflow_serving.apis import predict_pb2  # pylint: disable=g-import-not-at-top
from tensorflow_serving.apis import prediction_service_pb2_grpc  # pylint: disable=g-import-not-at-top

from benchmarks import refresh_race  # pylint: disable=g-import-not-at-top
from benchmarks import serving as serving_benchmark  # pylint: disable=g-import-not-at-top
from serving import limits  # pylint: disable=g-import-not-at-top
from serving import server_process  # pylint: disable=g-import-not-at-top
from serving import tensors  # pylint: disable=g-import-not-at-top

MEMBER_IDS = os.path.join("assets", "member_ids.txt")
_WAIT_S = 60.0


def _wait_for(condition: Callable[[], bool], timeout_s: float = _WAIT_S) -> float:
  """Seconds until `condition()` held; TimeoutError after `timeout_s`."""
  start = time.monotonic()
  while not condition():
    if time.monotonic() - start > timeout_s:
      raise TimeoutError(f"condition not met within {timeout_s:g} s")
    time.sleep(0.05)
  return round(time.monotonic() - start, 2)


class Abuse:
  """What scenarios share: the server, its base path, the legitimate clients' counters."""

  def __init__(self, server: server_process.ServerProcess, base_path: str, source: str,
               last_member: str):
    self.server = server
    self.base_path = base_path
    self.source = source  # a complete version to copy from
    self.last_member = last_member
    self.no_version = threading.Event()  # set while the scenario removed every version
    self.removed: Dict[int, float] = {}  # version -> when reported removed
    self.lock = threading.Lock()
    self.ok = 0
    self.failed: List[str] = []
    self.expected_not_found = 0
    self.wrong: List[str] = []

  def status(self) -> dict:
    return requests.get(f"http://127.0.0.1:{self.server.rest_port}/v1/models/limaml",
                        timeout=10).json()

  def serving_version(self):
    states = self.status().get("model_version_status", [])
    serving = [int(s["version"]) for s in states if s["state"] == "AVAILABLE"]
    return serving[0] if serving else None

  def record(self, started: float, version, personalised, error: str = "",
             not_found: bool = False) -> None:
    """Counts one legitimate answer; `started`: when its request was sent (monotonic)."""
    with self.lock:
      if error:
        if not_found and self.no_version.is_set():
          self.expected_not_found += 1
        else:
          self.failed.append(error[:200])
        return
      self.ok += 1
      if not all(personalised):
        self.wrong.append(f"version {version}: a known member scored as cold start")
      elif version is not None and started > self.removed.get(version, float("inf")):
        self.wrong.append(f"version {version} answered a request sent after it was reported "
                          "removed")


class _LegitClient(threading.Thread):
  """Predicts two known members (first and last of the table) until `stop`."""

  def __init__(self, abuse: Abuse, rest: bool, stop: threading.Event):
    super().__init__(daemon=True)
    self._abuse, self._rest, self._stop_event = abuse, rest, stop
    self._examples = np.concatenate([
        serving_benchmark.candidate_examples(serving_benchmark.KNOWN_MEMBER, 1),
        serving_benchmark.candidate_examples(abuse.last_member, 1)])

  def run(self):
    if self._rest:
      self._run_rest()
    else:
      self._run_grpc()

  def _run_grpc(self):
    request = serving_benchmark.predict_request("limaml", self._examples)
    with grpc.insecure_channel(f"127.0.0.1:{self._abuse.server.grpc_port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      while not self._stop_event.is_set():
        started = time.monotonic()
        try:
          response = stub.Predict(request, timeout=30)
        except grpc.RpcError as e:
          self._abuse.record(started, None, (), f"gRPC {e.code().name}: {e.details()}",
                             e.code() == grpc.StatusCode.NOT_FOUND)
          continue
        self._abuse.record(started, response.model_spec.version.value,
                           tensors.from_tensor_proto(response.outputs["personalised"]).tolist())

  def _run_rest(self):
    import base64  # pylint: disable=g-import-not-at-top
    body = {"instances": [{"b64": base64.b64encode(e).decode()} for e in self._examples]}
    url = f"http://127.0.0.1:{self._abuse.server.rest_port}/v1/models/limaml:predict"
    with requests.Session() as session:
      while not self._stop_event.is_set():
        started = time.monotonic()
        try:
          reply = session.post(url, json=body, timeout=30)
        except requests.RequestException as e:
          self._abuse.record(started, None, (), f"REST {type(e).__name__}: {e}")
          continue
        if reply.status_code != 200:
          self._abuse.record(started, None, (), f"REST {reply.status_code}: {reply.text}",
                             reply.status_code == 404)
        else:
          self._abuse.record(started, None,
                             [p["personalised"] for p in reply.json()["predictions"]])


def oversized_shapes(abuse: Abuse, senders: int = 8, each: int = 3) -> Dict:
  """Concurrent Predicts of one string declaring shape [2^26]; each must be INVALID_ARGUMENT."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "limaml"
  request.inputs["examples"].CopyFrom(tensor_pb2.TensorProto(
      dtype=types_pb2.DT_STRING, string_val=[b"x"], tensor_shape={"dim": [{"size": 1 << 26}]}))
  codes: List[str] = []
  rss_before = abuse.server.proc_status()["VmHWM_mb"]

  def send():
    with grpc.insecure_channel(f"127.0.0.1:{abuse.server.grpc_port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      for _ in range(each):
        try:
          stub.Predict(request, timeout=60)
          codes.append("OK")
        except grpc.RpcError as e:
          codes.append(e.code().name)

  start = time.monotonic()
  threads = [threading.Thread(target=send) for _ in range(senders)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  return {"requests": len(codes), "wire_bytes": request.ByteSize(),
          "invalid_argument": codes.count("INVALID_ARGUMENT"),
          "seconds": round(time.monotonic() - start, 2),
          "peak_rss_growth_mb": round(abuse.server.proc_status()["VmHWM_mb"] - rss_before, 1)}


def stalled_uploads(abuse: Abuse) -> Dict:
  """3x the connection cap of REST uploads that stop mid-body; threads stay capped, all close."""
  cap = abuse.server.limits.rest_api_num_threads
  threads_before = abuse.server.proc_status()["Threads"]
  sockets = []
  for _ in range(3 * cap):
    sock = socket.create_connection(("127.0.0.1", abuse.server.rest_port), timeout=_WAIT_S)
    sock.sendall(b"POST /v1/models/limaml:predict HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 100000\r\n\r\n{\"instances\": [")
    sockets.append(sock)
  start = time.monotonic()
  growth = 0
  closed = 0
  for sock in sockets:
    while True:
      growth = max(growth, abuse.server.proc_status()["Threads"] - threads_before)
      try:
        sock.settimeout(0.1)
        if not sock.recv(65536):
          closed += 1
          break
      except socket.timeout:
        if time.monotonic() - start > _WAIT_S:
          break
      except OSError:
        closed += 1
        break
    sock.close()
  return {"connections": len(sockets), "connection_cap": cap,
          "rest_timeout_s": abuse.server.limits.rest_api_timeout_s,
          "server_thread_growth_max": growth, "closed_by_server": closed,
          "all_closed_s": round(time.monotonic() - start, 2)}


def slow_copy(abuse: Abuse, pieces: int = 10, gap_s: float = 0.3) -> Dict:
  """Writes a new version in place, its member table in `pieces` with `gap_s` pauses."""
  current = abuse.serving_version()
  version = current + 1
  target = os.path.join(abuse.base_path, str(version))
  start = time.monotonic()
  shutil.copytree(abuse.source, target, ignore=lambda d, names: [
      n for n in names if os.path.join(d, n) == os.path.join(abuse.source, MEMBER_IDS)])
  with open(os.path.join(abuse.source, MEMBER_IDS), "rb") as f:
    table = f.read()
  wrong_before = len(abuse.wrong)
  gaps = []
  with open(os.path.join(target, MEMBER_IDS), "wb") as f:
    last = time.monotonic()
    for i in range(pieces):
      f.write(table[i * len(table) // pieces:(i + 1) * len(table) // pieces])
      f.flush()
      gaps.append(time.monotonic() - last)  # > the settle interval: a stalled writer
      last = time.monotonic()
      time.sleep(gap_s)
  written = time.monotonic()
  served_s = _wait_for(lambda: abuse.serving_version() == version)
  return {"version": version, "write_s": round(written - start, 2),
          "member_table_bytes": len(table), "served_after_complete_s": served_s,
          "settle_interval_s": abuse.server.limits.settle_interval_s,
          "max_write_gap_s": round(max(gaps), 2),
          "wrong_answers": len(abuse.wrong) - wrong_before}


def version_removal(abuse: Abuse) -> Dict:
  """Removes the serving version, then all; then restores one by an atomic rename."""
  current = abuse.serving_version()
  shutil.rmtree(os.path.join(abuse.base_path, str(current)))
  fallback_s = _wait_for(lambda: abuse.serving_version() not in (current, None))
  abuse.removed[current] = time.monotonic()
  abuse.no_version.set()
  left = [int(entry) for entry in os.listdir(abuse.base_path) if entry.isdigit()]
  for version in left:
    shutil.rmtree(os.path.join(abuse.base_path, str(version)))
  unloaded_s = _wait_for(lambda: abuse.serving_version() is None)
  abuse.removed.update({v: time.monotonic() for v in left})  # reported removed (END)
  states = [(s["version"], s["state"]) for s in abuse.status()["model_version_status"]]
  reply = requests.post(f"http://127.0.0.1:{abuse.server.rest_port}/v1/models/limaml:predict",
                        json={"instances": ["x"]}, timeout=10)
  restored = max(abuse.removed) + 1
  scratch = os.path.join(abuse.base_path, f".tmp-{restored}")
  shutil.copytree(abuse.source, scratch)
  os.rename(scratch, os.path.join(abuse.base_path, str(restored)))
  restored_s = _wait_for(lambda: abuse.serving_version() == restored)
  time.sleep(0.5)  # answers of in-flight requests
  abuse.no_version.clear()
  return {"fell_back_from": current, "fell_back_s": fallback_s, "unloaded_s": unloaded_s,
          "states_after_removal": states, "predict_after_removal": reply.status_code,
          "predict_error": reply.json().get("error", "")[:80], "restored_version": restored,
          "restored_s": restored_s}


#: The scenarios, run in this order; each `(Abuse) -> dict` of details.
SCENARIOS: List[Callable[[Abuse], Dict]] = [oversized_shapes, stalled_uploads, slow_copy,
                                            version_removal]


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--members", type=int, default=1000)
  parser.add_argument("--rest-timeout-s", type=float, default=2.0)
  parser.add_argument("--rest-threads", type=int, default=8)
  parser.add_argument("--settle-interval-s", type=float, default=limits.SETTLE_INTERVAL_S)
  parser.add_argument("--clients", type=int, default=3, help="legitimate clients (1 in 3 REST)")
  parser.add_argument("--refreshes", type=int, default=2,
                      help="concurrent `limaml embeddings refresh` processes (0: skip)")
  args = parser.parse_args(argv)
  if args.members < 2 or args.clients < 1:
    parser.error("--members must be >= 2 and --clients >= 1")
  server_limits = limits.ServerLimits(rest_api_num_threads=args.rest_threads,
                                      rest_api_timeout_s=args.rest_timeout_s,
                                      settle_interval_s=args.settle_interval_s)
  started = time.monotonic()
  with tempfile.TemporaryDirectory() as root:
    base = serving_benchmark.build_models(root, args.members)["limaml"]
    source = shutil.copytree(os.path.join(base, "1"), os.path.join(root, "source"))
    with open(os.path.join(source, MEMBER_IDS), encoding="utf-8") as f:
      last_member = f.read().split()[-1]
    with server_process.ServerProcess({"limaml": base}, server_limits) as server:
      abuse = Abuse(server, base, source, last_member)
      stop = threading.Event()
      clients = [_LegitClient(abuse, rest=i % 3 == 2, stop=stop) for i in range(args.clients)]
      for client in clients:
        client.start()
      _wait_for(lambda: abuse.ok >= 20)
      rss_before = server.proc_status()["VmHWM_mb"]
      details = {}
      for scenario in SCENARIOS:
        details[scenario.__name__] = scenario(abuse)
      time.sleep(1.0)
      stop.set()
      for client in clients:
        client.join(timeout=60)
      rss_after = server.proc_status()["VmHWM_mb"]
  # Concurrent refreshes of one base path (their own model and base path; no server needed).
  if args.refreshes:
    details["concurrent_refreshes"] = refresh_race.scenario(refreshes=args.refreshes)
  return {"server_peak_rss_growth_mb": round(rss_after - rss_before, 1),
          "requests_failed": len(abuse.failed), "wrong_versions_served": len(abuse.wrong),
          "updates_lost": details.get("concurrent_refreshes", {}).get("updates_lost"),
          "requests_ok": abuse.ok, "expected_not_found": abuse.expected_not_found,
          "seconds": round(time.monotonic() - started, 1), "scenarios": details,
          "first_failures": abuse.failed[:3], "first_wrong": abuse.wrong[:3]}


if __name__ == "__main__":
  print(json.dumps(main()))
