"""Versions of a TF Serving model base path: load, run, poll, hot-swap and unload.

Each version `<model_base_path>/<digits>/` is loaded as TF Serving's C++
loader does: `tf.compat.v1.saved_model.loader.load(session, ["serve"], path)`
into its own `tf.Graph` and `Session`; signatures run with `session.run` on
their tensor names. Version policy is TF Serving's default `latest`: the
highest loadable version serves. `Model.poll` loads a new version completely
(warmup included) *before* swapping it in; the old one keeps answering the
requests that hold it and is closed when the last of them finishes.
Directories that are not all digits, lack `saved_model.pb`, or fail to load
are skipped with a logged warning and retried only once their files change.

A version is loaded only once its files (names, sizes, modification times)
have been unchanged for `settle_interval_s`: a version still being copied in
is not served half-written. A serving version whose files change is reloaded
(again once they settle). When the serving version's directory is removed,
the next lower one serves; with none left the model is unloaded, its versions
report END and requests get NOT_FOUND "Servable not found", as TF Serving does.
With stock TF Serving (no settle interval) only an atomic rename of a complete
version directory is safe; the Pusher and `embeddings refresh` do that.

Errors meant for the caller are `ServingError`s carrying a gRPC status code
name (`INVALID_ARGUMENT`, `NOT_FOUND`, ...).
"""

import contextlib
import logging
import os
import threading
import time
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from serving import limits
from serving import tensors

log = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
SERVE_TAG = "serve"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
#: TF Serving replays at most this many warmup records.
MAX_WARMUP_RECORDS = 1000
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


class ServingError(Exception):
  """An error answered to the client: `code` is a `grpc.StatusCode` name."""

  def __init__(self, code: str, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def _check_inputs(signature: meta_graph_pb2.SignatureDef,
                  inputs: Mapping[str, np.ndarray],
                  dtypes: Optional[Mapping[str, int]] = None) -> None:
  """Raises INVALID_ARGUMENT unless `inputs` match the signature's names, dtypes and shapes.

  Args:
    signature: the signature.
    inputs: name -> array.
    dtypes: name -> `types_pb2` enum of the request tensor when it came with
      one (gRPC); default the arrays' own dtypes.
  """
  expected, given = set(signature.inputs), set(inputs)
  if expected != given:
    raise ServingError(
        "INVALID_ARGUMENT",
        f"inputs {sorted(given)} do not match the signature's {sorted(expected)}: "
        f"missing {sorted(expected - given)}, unexpected {sorted(given - expected)}")
  for name, info in signature.inputs.items():
    array = inputs[name]
    got = (dtypes or {}).get(name)
    if got is None:
      got = tf.as_dtype(np.dtype(bytes) if array.dtype == object else array.dtype)
      got = got.as_datatype_enum
    if got != info.dtype:
      raise ServingError("INVALID_ARGUMENT",
                         f"input {name!r} must be {tensors.dtype_name(info.dtype)}, "
                         f"got {tensors.dtype_name(got)}")
    if info.tensor_shape.unknown_rank:
      continue
    dims = [d.size for d in info.tensor_shape.dim]
    if array.ndim != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, array.shape)):
      shown = [d if d >= 0 else None for d in dims]
      raise ServingError("INVALID_ARGUMENT",
                         f"input {name!r} must have shape {shown}, got {list(array.shape)}")
    if dims and dims[0] < 0 and array.shape[0] == 0:
      raise ServingError("INVALID_ARGUMENT", f"input {name!r} has an empty batch (0 rows)")


def _status_of(error: tf.errors.OpError) -> str:
  """The gRPC status code name of a TF runtime error (request data errors: INVALID_ARGUMENT)."""
  import grpc  # pylint: disable=g-import-not-at-top
  for code in grpc.StatusCode:
    if code.value[0] == error.error_code:
      return code.name
  return "INTERNAL"


def _readable(message: str) -> str:
  """The informative line of a TF runtime error (no "Graph execution error:", no node lists)."""
  for line in message.splitlines():
    line = line.strip()
    if line and not line.startswith(("Graph execution error", "[[", "Detected at node")):
      return line[:500]
  return message.strip()[:500] or "the model rejected the request"


class LoadedVersion:
  """One loaded SavedModel version: a graph, a session and its signatures.

  Args:
    version: the version number.
    path: the version directory.
  """

  def __init__(self, version: int, path: str):
    self.version = version
    self.path = path
    self._graph = tf.Graph()
    self._session = tf.compat.v1.Session(graph=self._graph)
    try:
      with self._graph.as_default():
        meta_graph = tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], path)
    except BaseException:
      self._session.close()
      raise
    self.signatures: Dict[str, meta_graph_pb2.SignatureDef] = dict(meta_graph.signature_def)
    self._callables: Dict[Tuple[str, Tuple[str, ...]], tuple] = {}
    self._lock = threading.Lock()
    self._holders = 0
    self._retired = False
    self._closed = False

  def signature(self, name: str) -> meta_graph_pb2.SignatureDef:
    """The signature `name` (empty: `serving_default`); INVALID_ARGUMENT if absent."""
    name = name or DEFAULT_SIGNATURE
    if name not in self.signatures:
      raise ServingError("INVALID_ARGUMENT",
                         f"signature {name!r} not found; the model has "
                         f"{sorted(self.signatures)}")
    return self.signatures[name]

  def _callable(self, signature_name: str, signature: meta_graph_pb2.SignatureDef,
                outputs: Tuple[str, ...]):
    key = (signature_name, outputs)
    with self._lock:
      if key not in self._callables:
        feeds = tuple(sorted(signature.inputs))
        fetch = self._session.make_callable(
            [signature.outputs[o].name for o in outputs],
            [signature.inputs[i].name for i in feeds])
        self._callables[key] = (feeds, fetch)
      return self._callables[key]

  def run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
          output_filter: Sequence[str] = (),
          dtypes: Optional[Mapping[str, int]] = None) -> Dict[str, np.ndarray]:
    """Runs a signature on validated inputs.

    Args:
      signature_name: the signature (empty: `serving_default`).
      inputs: input name -> array.
      output_filter: the outputs to compute (empty: all).
      dtypes: input name -> request dtype enum (gRPC), for the dtype check.

    Returns:
      output name -> array.

    Raises:
      ServingError: INVALID_ARGUMENT on a bad signature, input or output
        name, dtype, shape or data the graph rejects.
    """
    signature_name = signature_name or DEFAULT_SIGNATURE
    signature = self.signature(signature_name)
    _check_inputs(signature, inputs, dtypes)
    unknown = sorted(set(output_filter) - set(signature.outputs))
    if unknown:
      raise ServingError("INVALID_ARGUMENT",
                         f"output_filter names {unknown} not in the signature's outputs "
                         f"{sorted(signature.outputs)}")
    outputs = tuple(sorted(set(output_filter) or signature.outputs))
    feeds, fetch = self._callable(signature_name, signature, outputs)
    try:
      values = fetch(*[inputs[name] for name in feeds])
    except tf.errors.OpError as e:
      raise ServingError(_status_of(e), _readable(e.message)) from e
    except (TypeError, ValueError) as e:
      raise ServingError("INVALID_ARGUMENT", f"cannot feed the inputs: {e}") from e
    return dict(zip(outputs, values))

  def warmup(self) -> int:
    """Replays the version's `assets.extra/tf_serving_warmup_requests` predict requests.

    Returns:
      The number of requests replayed.

    Raises:
      ServingError: if a record is not a `PredictionLog` or a request fails.
    """
    from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.path, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
      return 0
    count = 0
    for record in tf.compat.v1.io.tf_record_iterator(path):
      if count >= MAX_WARMUP_RECORDS:
        break
      entry = prediction_log_pb2.PredictionLog()
      try:
        entry.ParseFromString(record)
      except Exception as e:  # pylint: disable=broad-except  (protobuf DecodeError)
        raise ServingError("INVALID_ARGUMENT", f"warmup record {count} is not a "
                           f"PredictionLog: {e}") from e
      if entry.WhichOneof("log_type") == "predict_log":
        request = entry.predict_log.request
        inputs = {k: tensors.from_tensor_proto(v, k) for k, v in request.inputs.items()}
        self.run(request.model_spec.signature_name, inputs, list(request.output_filter),
                 {k: v.dtype for k, v in request.inputs.items()})
      count += 1
    return count

  def acquire(self) -> bool:
    """Holds the version for a request; False if it was already retired."""
    with self._lock:
      if self._retired:
        return False
      self._holders += 1
      return True

  def release(self) -> None:
    """Ends a request's hold; closes a retired version when the last hold ends."""
    with self._lock:
      self._holders -= 1
      close = self._retired and self._holders == 0
    if close:
      self._close()

  def retire(self) -> None:
    """Stops new holds; closes now if nothing holds the version, else at the last release."""
    with self._lock:
      self._retired = True
      close = self._holders == 0
    if close:
      self._close()

  @property
  def closed(self) -> bool:
    return self._closed

  def _close(self) -> None:
    with self._lock:
      if self._closed:
        return
      self._closed = True
    self._session.close()
    log.info("unloaded version %d (%s)", self.version, self.path)


def _fingerprint(path: str) -> Tuple:
  """Names, sizes and modification times of the files under `path` (changes on any write)."""
  entries = []
  for root, _, files in os.walk(path):
    for name in files:
      full = os.path.join(root, name)
      try:
        stat = os.stat(full)
      except OSError:
        continue
      entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
  return tuple(sorted(entries))


class Model:
  """The versions of one model name under a base path, serving the latest loadable one.

  Args:
    name: the model name requests use.
    base_path: the directory of `<version>/` SavedModels.
    settle_interval_s: seconds a version's files must be unchanged before it
      is loaded or reloaded (0: at once).
  """

  def __init__(self, name: str, base_path: str,
               settle_interval_s: float = limits.SETTLE_INTERVAL_S):
    if not settle_interval_s >= 0:
      raise ValueError(f"settle_interval_s must be >= 0, got {settle_interval_s!r}")
    self.name = name
    self.base_path = base_path
    self.settle_interval_s = settle_interval_s
    self._lock = threading.Lock()
    self._poll_lock = threading.Lock()
    self._serving: Optional[LoadedVersion] = None
    self._serving_fingerprint: Tuple = ()
    self._failed: Dict[int, Tuple[Tuple, str]] = {}
    self._unloaded: List[int] = []
    self._seen: Dict[int, Tuple[Tuple, float]] = {}  # version -> (fingerprint, first seen)
    self._settling: List[int] = []

  def _candidates(self) -> List[Tuple[int, str]]:
    try:
      names = os.listdir(self.base_path)
    except OSError as e:
      log.warning("model %r: cannot list base path %s: %s", self.name, self.base_path, e)
      return []
    found = []
    for entry in names:
      path = os.path.join(self.base_path, entry)
      if not os.path.isdir(path) or entry.startswith("."):
        continue
      if not entry.isdigit() or not entry.isascii():
        log.debug("model %r: skipping %s (not a version number)", self.name, path)
        continue
      found.append((int(entry), path))
    return sorted(found, reverse=True)

  def _skip(self, version: int, fingerprint: Tuple, reason: str) -> None:
    if self._failed.get(version, (None,))[0] != fingerprint:
      log.warning("model %r: skipping version %d: %s", self.name, version, reason)
    self._failed[version] = (fingerprint, reason)

  def _settled(self, version: int, fingerprint: Tuple, now: float, wall_ns: int) -> bool:
    """Whether `version`'s files have been unchanged for the settle interval.

    Unchanged since this process first saw them that long ago, or last
    modified that long ago (so versions already complete at start load at once).
    `wall_ns` is the clock read *before* the fingerprint's stat calls, so a
    poll delayed between them cannot mistake a fresh write for an old one.
    """
    seen = self._seen.get(version)
    if seen is None or seen[0] != fingerprint:
      seen = self._seen[version] = (fingerprint, now)
    if now - seen[1] >= self.settle_interval_s:
      return True
    newest_ns = max((entry[2] for entry in fingerprint), default=0)
    return wall_ns - newest_ns >= self.settle_interval_s * 1e9

  def poll(self) -> Optional[int]:
    """Serves the highest loadable, settled version; returns the version serving after the poll.

    A higher version is loaded and warmed up completely before it replaces the
    serving one, which is unloaded once its in-flight requests finish. With no
    loadable version the current one keeps serving, unless its directory was
    removed: then it is unloaded.
    """
    with self._poll_lock:
      now = time.monotonic()
      candidates = self._candidates()
      present = {version for version, _ in candidates}
      self._seen = {v: seen for v, seen in self._seen.items() if v in present}
      serving = self._serving
      self._settling = []
      for version, path in candidates:
        wall_ns = time.time_ns()
        fingerprint = _fingerprint(path)
        if serving is not None and version == serving.version:
          if fingerprint == self._serving_fingerprint or (
              version in self._failed and self._failed[version][0] == fingerprint):
            break  # unchanged, or its changed files already failed to load: keep serving
          if not self._settled(version, fingerprint, now, wall_ns):
            self._settling.append(version)
          else:
            log.warning("model %r: the files of serving version %d changed; reloading", self.name,
                        version)
            self._load_and_swap(version, path, fingerprint)
          break
        if version in self._failed and self._failed[version][0] == fingerprint:
          continue
        if not self._settled(version, fingerprint, now, wall_ns):
          self._settling.append(version)
          log.info("model %r: version %d is still being written; waiting for its files to "
                   "settle", self.name, version)
          continue
        if self._load_and_swap(version, path, fingerprint):
          break
      if self._serving is not None and self._serving.version not in present:
        self._unload_removed()
      return self._serving.version if self._serving else None

  def settling(self) -> bool:
    """Whether the last poll left a version waiting for its files to settle."""
    return bool(self._settling)

  def _load_and_swap(self, version: int, path: str, fingerprint: Tuple) -> bool:
    if not any(os.path.isfile(os.path.join(path, f)) for f in _SAVED_MODEL_FILES):
      self._skip(version, fingerprint, f"no saved_model.pb in {path}")
      return False
    loaded = self._load(version, path, fingerprint)
    if loaded is None:
      return False
    self._swap(loaded, fingerprint)
    return True

  def _unload_removed(self) -> None:
    with self._lock:
      old, self._serving = self._serving, None
    log.warning("model %r: serving version %d was removed from %s and no other version is "
                "loadable; unloading it", self.name, old.version, self.base_path)
    self._unloaded.append(old.version)
    old.retire()

  def _load(self, version: int, path: str, fingerprint: Tuple) -> Optional[LoadedVersion]:
    try:
      loaded = LoadedVersion(version, path)
    except Exception as e:  # pylint: disable=broad-except  (any corrupt SavedModel)
      self._skip(version, fingerprint, f"load failed: {type(e).__name__}: {str(e)[:300]}")
      return None
    try:
      replayed = loaded.warmup()
    except Exception as e:  # pylint: disable=broad-except
      loaded.retire()
      self._skip(version, fingerprint, f"warmup failed: {str(e)[:300]}")
      return None
    self._failed.pop(version, None)
    log.info("model %r: loaded version %d from %s (%d warmup requests)", self.name, version,
             path, replayed)
    return loaded

  def _swap(self, loaded: LoadedVersion, fingerprint: Tuple) -> None:
    with self._lock:
      old, self._serving = self._serving, loaded
      self._serving_fingerprint = fingerprint
    if old is not None:
      if old.version != loaded.version:
        self._unloaded.append(old.version)
      old.retire()

  @contextlib.contextmanager
  def hold(self, version: Optional[int] = None) -> Iterator[LoadedVersion]:
    """The serving version (or `version`, if it is the one serving), held for a request.

    Raises:
      ServingError: NOT_FOUND when no version (or not `version`) is serving.
    """
    while True:
      with self._lock:
        loaded = self._serving
      request = f"Latest({self.name})" if version is None else f"Specific({self.name}, {version})"
      if loaded is None:
        raise ServingError("NOT_FOUND", f"Servable not found for request: {request}: model "
                           f"{self.name!r} has no loaded version (base path {self.base_path})")
      if version is not None and version != loaded.version:
        raise ServingError("NOT_FOUND", f"Servable not found for request: {request}: model "
                           f"{self.name!r} version {version} is not serving; version "
                           f"{loaded.version} is")
      if loaded.acquire():
        break
      # Retired between the read and the hold: the next read sees its successor.
    try:
      yield loaded
    finally:
      loaded.release()

  @property
  def serving_version(self) -> Optional[int]:
    with self._lock:
      return self._serving.version if self._serving else None

  def states(self) -> List[Tuple[int, str, str]]:
    """`(version, state, error message)` of the known versions, newest first.

    States as TF Serving reports them: AVAILABLE (serving), END (unloaded, or a
    failed load with its message).
    """
    result = {}
    for version, (_, reason) in list(self._failed.items()):
      result[version] = (version, "END", reason)
    for version in list(self._unloaded):
      result[version] = (version, "END", "")
    serving = self.serving_version
    if serving is not None:
      result[serving] = (serving, "AVAILABLE", "")
    return [result[v] for v in sorted(result, reverse=True)]

  def close(self) -> None:
    """Unloads the serving version (after its in-flight requests)."""
    with self._lock:
      old, self._serving = self._serving, None
    if old is not None:
      old.retire()


class Models:
  """The models a server serves, by name.

  Args:
    base_paths: model name -> model base path.
    settle_interval_s: as `Model`'s.
  """

  def __init__(self, base_paths: Mapping[str, str],
               settle_interval_s: float = limits.SETTLE_INTERVAL_S):
    if not base_paths:
      raise ValueError("serve at least one model")
    self._models = {name: Model(name, path, settle_interval_s)
                    for name, path in base_paths.items()}

  @property
  def names(self) -> List[str]:
    return sorted(self._models)

  def get(self, name: str) -> Model:
    """The model `name`; NOT_FOUND if not served."""
    if name not in self._models:
      raise ServingError("NOT_FOUND", f"model {name!r} not found; serving {self.names}")
    return self._models[name]

  def poll(self) -> Dict[str, Optional[int]]:
    """Polls every model; returns name -> serving version."""
    return {name: model.poll() for name, model in self._models.items()}

  def close(self) -> None:
    for model in self._models.values():
      model.close()
