"""The dev server in a child process, so its memory and threads can be measured from outside.

Used by the abuse benchmark and the resource tests: the child's peak RSS
(`VmHWM`) and thread count come from `/proc/<pid>/status` (Linux), untouched
by the measuring process's own allocations.

Example:

```python
with ServerProcess({"limaml": "/models/limaml"}) as server:
  before = server.proc_status()["VmHWM_mb"]
  ...  # requests to 127.0.0.1:server.grpc_port / server.rest_port
  growth = server.proc_status()["VmHWM_mb"] - before
```
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Dict, Mapping, Optional

from serving import limits as limits_lib

# The child: serve until SIGINT, printing the bound ports once serving.
_CHILD = """
import json, sys
from serving import dev_server, limits
config = json.loads(sys.argv[1])
server = dev_server.DevServer(None, models=config["models"], grpc_port=0, rest_port=0,
                              poll_interval_s=config["poll_interval_s"],
                              limits=limits.ServerLimits(**config["limits"]))
server.start()
print("READY", server.grpc_port, server.rest_port, flush=True)
server.wait()
"""


class ServerProcess:
  """A `serving.dev_server.DevServer` in a child Python process on free loopback ports.

  Args:
    models: model name -> base path.
    limits: the server's limits.
    poll_interval_s: the server's poll interval.
    startup_timeout_s: how long `start` waits for the child to serve.
  """

  def __init__(self, models: Mapping[str, str],
               limits: limits_lib.ServerLimits = limits_lib.ServerLimits(),
               poll_interval_s: float = 0.2, startup_timeout_s: float = 180.0):
    for name, path in models.items():
      if not os.path.isdir(path):
        raise ValueError(f"model base path {path!r} of model {name!r} is not a directory")
    self.limits = limits
    self._config = {"models": dict(models), "poll_interval_s": poll_interval_s,
                    "limits": dataclasses.asdict(limits)}
    self._startup_timeout_s = startup_timeout_s
    self._process: Optional[subprocess.Popen] = None
    self.grpc_port = 0
    self.rest_port = 0

  @property
  def pid(self) -> int:
    if self._process is None:
      raise RuntimeError("the server process is not started")
    return self._process.pid

  def start(self) -> "ServerProcess":
    """Starts the child and waits until it serves; RuntimeError with its output if it fails."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    self._process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, json.dumps(self._config)], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    ready = threading.Event()

    def read():
      for line in self._process.stdout:
        if line.startswith("READY "):
          _, grpc_port, rest_port = line.split()
          self.grpc_port, self.rest_port = int(grpc_port), int(rest_port)
          ready.set()
        else:
          lines.append(line)
          del lines[:-50]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + self._startup_timeout_s
    while not ready.wait(0.2):
      if self._process.poll() is not None or time.monotonic() > deadline:
        self.stop()
        reader.join(timeout=5)
        raise RuntimeError("the dev server process did not start (within "
                           f"{self._startup_timeout_s:g} s):\n{''.join(lines)}")
    return self

  def proc_status(self) -> Dict[str, float]:
    """`VmRSS_mb`, `VmHWM_mb` (peak RSS) and `Threads` of the child, from /proc."""
    result = {}
    with open(f"/proc/{self.pid}/status", encoding="ascii") as f:
      for line in f:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
          result[f"{key}_mb"] = int(value.split()[0]) / 1024
        elif key == "Threads":
          result[key] = int(value)
    return result

  def stop(self) -> None:
    """SIGINT (the server stops cleanly), then SIGKILL after 30 s."""
    process, self._process = self._process, None
    if process is None or process.poll() is not None:
      return
    process.send_signal(signal.SIGINT)
    try:
      process.wait(timeout=30)
    except subprocess.TimeoutExpired:
      process.kill()
      process.wait()

  def __enter__(self) -> "ServerProcess":
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()
