"""Peak resident memory of a process tree, sampled (the benchmarks' memory numbers)."""

import threading
from typing import Callable, Dict, Optional

import psutil


def tree_rss_bytes(pid: int) -> int:
  """Resident memory of a process and all its descendants (0 once it has exited)."""
  try:
    root = psutil.Process(pid)
    processes = [root] + root.children(recursive=True)
  except psutil.NoSuchProcess:
    return 0
  total = 0
  for process in processes:
    try:
      total += process.memory_info().rss
    except psutil.NoSuchProcess:
      pass
  return total


class PeakRss:
  """Samples `tree_rss_bytes(pid)` in a thread until `stop()`; `peak` is the largest sample.

  With `label` (a function called at each sample, e.g. the pipeline component
  running now), `peaks` holds the largest sample taken under each label
  (samples labelled None count only toward `peak`).
  """

  def __init__(self, pid: int, interval_s: float,
               label: Optional[Callable[[], Optional[str]]] = None):
    self.peak = 0
    self.peaks: Dict[str, int] = {}
    self._pid, self._interval_s, self._label = pid, interval_s, label
    self._done = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()

  def _sample(self) -> None:
    while not self._done.is_set():
      rss = tree_rss_bytes(self._pid)
      self.peak = max(self.peak, rss)
      name = self._label() if self._label else None
      if name is not None:
        self.peaks[name] = max(self.peaks.get(name, 0), rss)
      self._done.wait(self._interval_s)

  def stop(self) -> int:
    self._done.set()
    self._thread.join()
    return self.peak
