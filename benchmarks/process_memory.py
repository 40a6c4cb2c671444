"""Peak resident memory of a process tree, sampled (the benchmarks' memory numbers)."""

import threading

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
  """Samples `tree_rss_bytes(pid)` in a thread until `stop()`; `peak` is the largest sample."""

  def __init__(self, pid: int, interval_s: float):
    self.peak = 0
    self._pid, self._interval_s = pid, interval_s
    self._done = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()

  def _sample(self) -> None:
    while not self._done.is_set():
      self.peak = max(self.peak, tree_rss_bytes(self._pid))
      self._done.wait(self._interval_s)

  def stop(self) -> int:
    self._done.set()
    self._thread.join()
    return self.peak
