"""Request counts and latency histograms in the Prometheus text format (as TF Serving names them).

TF Serving exports `:tensorflow:serving:request_count` and
`:tensorflow:serving:request_latency` (microseconds) at the path of its
`--monitoring_config_file` (`serving/monitoring.config`:
`/monitoring/prometheus/metrics`); the dev server exports the same names there,
so a dashboard built for one works with the other. Labels: `model_name` (only
served names; anything else counts as `""`, so clients cannot grow the label
set), `API` (`predict`, `GetModelMetadata`, `GetModelStatus`), `entrypoint`
(`GRPC` or `REST`) and, on counts, `status` (a gRPC status code name).

Example:

```python
metrics = Metrics()
with metrics.timed("limaml", "predict", "GRPC") as outcome:
  ...
  outcome.status = "OK"
text = metrics.exposition()
```
"""

import bisect
import contextlib
import dataclasses
import threading
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

#: The path `serving/monitoring.config` configures.
METRICS_PATH = "/monitoring/prometheus/metrics"
#: Content type of the Prometheus text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
#: Latency bucket upper bounds in microseconds (10 us to ~168 s, factor 1.8 as TF Serving).
LATENCY_BUCKETS_US = tuple(round(10 * 1.8 ** i) for i in range(29))

_Labels = Tuple[Tuple[str, str], ...]


@dataclasses.dataclass
class Outcome:
  """What a timed request ended with; `status` defaults to INTERNAL (an exception escaped)."""
  status: str = "INTERNAL"
  model_name: Optional[str] = None


@dataclasses.dataclass
class _Histogram:
  buckets: List[int]
  total: float = 0.0
  count: int = 0


def _escape(value: str) -> str:
  return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _format_labels(labels: _Labels, extra: Sequence[Tuple[str, str]] = ()) -> str:
  pairs = list(labels) + list(extra)
  return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _number(value: float) -> str:
  return str(int(value)) if float(value).is_integer() else repr(float(value))


class Metrics:
  """Thread-safe request counters and latency histograms of one server.

  Args:
    model_names: the served model names (others are labelled `""`).
    buckets_us: histogram bucket upper bounds, microseconds, increasing.
  """

  def __init__(self, model_names: Sequence[str] = (),
               buckets_us: Sequence[float] = LATENCY_BUCKETS_US):
    if list(buckets_us) != sorted(set(buckets_us)) or not buckets_us:
      raise ValueError("buckets_us must be non-empty and strictly increasing")
    self._model_names = frozenset(model_names)
    self._bounds = tuple(buckets_us)
    self._lock = threading.Lock()
    self._counts: Dict[_Labels, int] = {}
    self._latencies: Dict[_Labels, _Histogram] = {}

  def observe(self, model_name: str, api: str, entrypoint: str, status: str,
              latency_s: float) -> None:
    """Counts one request and records its latency."""
    name = model_name if model_name in self._model_names else ""
    labels = (("model_name", name), ("API", api), ("entrypoint", entrypoint))
    latency_us = latency_s * 1e6
    with self._lock:
      key = labels + (("status", status),)
      self._counts[key] = self._counts.get(key, 0) + 1
      histogram = self._latencies.setdefault(labels, _Histogram([0] * len(self._bounds)))
      index = bisect.bisect_left(self._bounds, latency_us)
      if index < len(self._bounds):
        histogram.buckets[index] += 1
      histogram.total += latency_us
      histogram.count += 1

  @contextlib.contextmanager
  def timed(self, model_name: str, api: str, entrypoint: str) -> Iterator[Outcome]:
    """Times the block; set `outcome.status` (and optionally `model_name`) inside it."""
    outcome = Outcome(model_name=model_name)
    start = time.perf_counter()
    try:
      yield outcome
    finally:
      self.observe(outcome.model_name or "", api, entrypoint, outcome.status,
                   time.perf_counter() - start)

  def exposition(self) -> str:
    """Every metric in the Prometheus text exposition format (version 0.0.4)."""
    with self._lock:
      counts = sorted(self._counts.items())
      latencies = sorted((k, _Histogram(list(v.buckets), v.total, v.count))
                         for k, v in self._latencies.items())
    lines = [f"# HELP {REQUEST_COUNT} The total number of requests.",
             f"# TYPE {REQUEST_COUNT} counter"]
    lines += [f"{REQUEST_COUNT}{_format_labels(k)} {v}" for k, v in counts]
    lines += [f"# HELP {REQUEST_LATENCY} Distribution of request latency in microseconds.",
              f"# TYPE {REQUEST_LATENCY} histogram"]
    for labels, histogram in latencies:
      cumulative = 0
      for bound, count in zip(self._bounds, histogram.buckets):
        cumulative += count
        lines.append(f"{REQUEST_LATENCY}_bucket"
                     f"{_format_labels(labels, [('le', _number(bound))])} {cumulative}")
      lines.append(f"{REQUEST_LATENCY}_bucket{_format_labels(labels, [('le', '+Inf')])} "
                   f"{histogram.count}")
      lines.append(f"{REQUEST_LATENCY}_sum{_format_labels(labels)} {_number(histogram.total)}")
      lines.append(f"{REQUEST_LATENCY}_count{_format_labels(labels)} {histogram.count}")
    return "\n".join(lines) + "\n"
