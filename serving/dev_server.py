"""A PredictionService-compatible dev server (gRPC + REST) for machines without TF Serving.

It serves the versioned SavedModels of a model base path the way
`tensorflow_model_server --model_name=<name> --model_base_path=<dir>` does:
same gRPC services (`serving.grpc_service`), same REST API
(`serving.rest_service`), TF Serving's C++ loader path and `latest` version
policy with hot-swap (`serving.versions`). It is a development and test tool,
not a production server.

Example:

```python
with DevServer("/models/limaml", grpc_port=0, rest_port=0) as server:
  channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
  ...
```
"""

import logging
import os
import threading
import time
from concurrent import futures
from typing import Callable, Mapping, Optional

import grpc

from serving import grpc_service
from serving import limits as limits_lib
from serving import metrics as metrics_lib
from serving import rest_service
from serving import versions

log = logging.getLogger(__name__)


class DevServer:
  """Serves the latest version of each model over gRPC and REST, polling for new ones.

  Args:
    model_base_path: directory of `<version>/` SavedModels of `model_name`
      (None if only `models` are served).
    model_name: the name requests use for `model_base_path`.
    host: interface to bind.
    grpc_port: gRPC port (0 picks a free one; the bound one is `grpc_port`
      after `start`).
    rest_port: REST port (0 picks a free one).
    poll_interval_s: how often the base paths are scanned for new versions.
    models: more models to serve, name -> base path.
    limits: request size (both APIs), threads, REST timeout and the settle
      interval of new versions (`serving.limits`).
  """

  def __init__(self, model_base_path: Optional[str], model_name: str = "limaml", *,
               host: str = "127.0.0.1", grpc_port: int = 8500, rest_port: int = 8501,
               poll_interval_s: float = 1.0, models: Optional[Mapping[str, str]] = None,
               limits: limits_lib.ServerLimits = limits_lib.ServerLimits()):
    base_paths = dict(models or {})
    if model_base_path is not None:
      if model_name in base_paths:
        raise ValueError(f"model {model_name!r} is given twice")
      base_paths[model_name] = model_base_path
    if not base_paths:
      raise ValueError("give a model_base_path or models to serve")
    for name, path in base_paths.items():
      if not name or "/" in name or ":" in name:
        raise ValueError(f"model name {name!r} must be non-empty, without '/' or ':'")
      if not os.path.isdir(path):
        raise ValueError(f"model base path {path!r} of model {name!r} is not a directory")
    if poll_interval_s <= 0:
      raise ValueError(f"poll_interval_s must be positive, got {poll_interval_s}")
    for port_name, port in (("grpc_port", grpc_port), ("rest_port", rest_port)):
      if not 0 <= port <= 65535:
        raise ValueError(f"{port_name} must be in [0, 65535], got {port}")
    self.limits = limits
    self.models = versions.Models(base_paths, limits.settle_interval_s)
    self.metrics = metrics_lib.Metrics(self.models.names)
    self.host = host
    self.grpc_port = grpc_port
    self.rest_port = rest_port
    self.poll_interval_s = poll_interval_s
    self._grpc: Optional[grpc.Server] = None
    self._rest: Optional[rest_service.RestServer] = None
    self._threads = []
    self._stopped = threading.Event()
    self._stop_lock = threading.Lock()
    self._unloaded = threading.Event()
    self._unloaded.set()

  def _initial_poll(self) -> None:
    """Polls until every model serves, or no version is still settling (as TF Serving
    loads its models before it serves; bounded by a few settle intervals)."""
    deadline = time.monotonic() + 3 * self.limits.settle_interval_s + 1.0
    while True:
      serving = self.models.poll()
      missing = [name for name, version in serving.items() if version is None]
      if not missing or time.monotonic() >= deadline or not any(
          self.models.get(name).settling() for name in missing):
        break
      time.sleep(min(0.2, self.poll_interval_s))
    for name in missing:
      log.warning("model %r has no loadable version yet; polling %s", name,
                  self.models.get(name).base_path)

  def start(self) -> "DevServer":
    """Loads the newest loadable version of each model, then serves; returns at once."""
    if self._grpc is not None:
      raise RuntimeError("the server is already started")
    self._initial_poll()
    size = self.limits.max_request_bytes
    self._grpc = grpc.server(
        futures.ThreadPoolExecutor(max_workers=self.limits.grpc_max_threads),
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", size),
                 ("grpc.max_send_message_length", size)])
    grpc_service.add_to_server(self.models, self._grpc, size, self.metrics)
    bound = self._grpc.add_insecure_port(f"{self.host}:{self.grpc_port}")
    if bound == 0:
      self._grpc = None
      raise OSError(f"cannot bind gRPC to {self.host}:{self.grpc_port}")
    self.grpc_port = bound
    try:
      self._rest = rest_service.RestServer(self.models, self.host, self.rest_port, self.limits,
                                           self.metrics)
    except OSError as e:
      self._grpc = None
      raise OSError(f"cannot bind REST to {self.host}:{self.rest_port}: {e}") from e
    self.rest_port = self._rest.server_address[1]
    self._grpc.start()
    self._stopped.clear()
    self._unloaded.clear()
    self._threads = [threading.Thread(target=self._rest.serve_forever, name="rest", daemon=True),
                     threading.Thread(target=self._poll_loop, name="poll", daemon=True)]
    for thread in self._threads:
      thread.start()
    log.info("serving %s: gRPC %s:%d, REST %s:%d", self.models.names, self.host, self.grpc_port,
             self.host, self.rest_port)
    return self

  def _poll_loop(self) -> None:
    while not self._stopped.wait(self.poll_interval_s):
      try:
        self.models.poll()
      except Exception:  # pylint: disable=broad-except  (keep polling whatever happens)
        log.exception("polling the model base paths failed")

  def stop(self) -> None:
    """Stops serving (in-flight requests get a short grace) and unloads every version."""
    with self._stop_lock:
      grpc_server, rest_server = self._grpc, self._rest
      self._grpc = self._rest = None
    if grpc_server is None:
      self._unloaded.wait()  # another thread may be stopping: return once it is done
      return
    self._stopped.set()
    grpc_server.stop(grace=2.0).wait()
    if rest_server is not None:  # None when Ctrl-C came between binding gRPC and REST
      rest_server.shutdown()
      rest_server.server_close()
    for thread in self._threads:
      thread.join(timeout=10)
    self.models.close()
    self._unloaded.set()

  def serve_until_interrupted(self, on_serving: Callable[[], None] = lambda: None) -> None:
    """Starts, calls `on_serving`, serves until Ctrl-C or `stop`, then stops.

    Ctrl-C (SIGINT) at any point, also while loading or before `wait` takes
    over, stops the server: a `KeyboardInterrupt` that escaped would leave
    gRPC's worker threads running and the process hanging at exit.

    Args:
      on_serving: called once the ports are bound (e.g. to print them).

    Raises:
      OSError: a port cannot be bound (nothing is left running).
    """
    try:
      self.start()
      on_serving()
      self.wait()
    except KeyboardInterrupt:
      log.info("interrupted; stopping")
    finally:
      self.stop()

  def wait(self) -> None:
    """Blocks until `stop` (from another thread) or Ctrl-C, which stops the server."""
    try:
      while not self._stopped.wait(0.5):
        pass
    except KeyboardInterrupt:
      log.info("interrupted; stopping")
    finally:
      self.stop()

  def __enter__(self) -> "DevServer":
    return self.start()

  def __exit__(self, *exc_info) -> None:
    self.stop()
