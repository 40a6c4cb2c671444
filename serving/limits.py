"""Resource limits of the dev server: every default written once, flags and constructors reuse them.

The names follow `tensorflow_model_server`'s flags where it has one:
`--grpc_max_threads`, `--rest_api_num_threads`, `--rest_api_timeout_in_ms`
(30 s there too). TF Serving accepts gRPC messages up to 2 GiB; the dev server
holds requests in Python objects, so it takes one smaller limit for both APIs
(`max_request_bytes`): a request REST accepts is accepted over gRPC too.

Example:

```python
limits = ServerLimits(max_request_bytes=16 << 20, rest_api_timeout_s=5.0)
DevServer(base_path, limits=limits)
```
"""

import dataclasses

#: Largest request (gRPC message or REST body), bytes; the same for both APIs.
MAX_REQUEST_BYTES = 64 << 20
#: gRPC worker threads; requests beyond these wait in gRPC's queue.
GRPC_MAX_THREADS = 64
#: Concurrent REST connections (one thread each); more wait in the listen backlog.
REST_API_NUM_THREADS = 64
#: Seconds a REST client may take to send a request (headers and body) before it is closed.
REST_API_TIMEOUT_S = 30.0
#: Seconds a version's files must stay unchanged before it is loaded (or reloaded).
SETTLE_INTERVAL_S = 2.0
#: Bytes a request tensor may decode to when it uses the proto's "repeat the last
#: value" shorthand (fewer values than its shape); otherwise every value is sent.
MAX_FILL_BYTES = 1 << 20


@dataclasses.dataclass(frozen=True)
class ServerLimits:
  """The dev server's limits (module constants are the defaults).

  Attributes:
    max_request_bytes: largest gRPC message / REST body.
    grpc_max_threads: gRPC worker threads.
    rest_api_num_threads: concurrent REST connections.
    rest_api_timeout_s: seconds to receive one REST request.
    settle_interval_s: seconds a version's files must be unchanged before it loads.
  """

  max_request_bytes: int = MAX_REQUEST_BYTES
  grpc_max_threads: int = GRPC_MAX_THREADS
  rest_api_num_threads: int = REST_API_NUM_THREADS
  rest_api_timeout_s: float = REST_API_TIMEOUT_S
  settle_interval_s: float = SETTLE_INTERVAL_S

  def __post_init__(self):
    for name in ("max_request_bytes", "grpc_max_threads", "rest_api_num_threads"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if self.max_request_bytes >= 1 << 31:
      raise ValueError(f"max_request_bytes must be below 2 GiB (gRPC's limit), got "
                       f"{self.max_request_bytes}")
    if not self.rest_api_timeout_s > 0:
      raise ValueError(f"rest_api_timeout_s must be positive, got {self.rest_api_timeout_s!r}")
    if not self.settle_interval_s >= 0:
      raise ValueError(f"settle_interval_s must be >= 0, got {self.settle_interval_s!r}")
