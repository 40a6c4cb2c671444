"""`benchmarks/process_memory.py`: the peak RSS of a process tree."""

import os
import subprocess
import sys
import threading

import psutil

from tests.benchmarks import scripts

memory = scripts.load("process_memory")


def test_peak_rss_covers_child_processes():
  # A child that holds ~200 MB: the tree's peak must include it, the parent's alone would not.
  child = subprocess.Popen([sys.executable, "-c",
                            "import sys, time; b = bytearray(200 * 2**20); "
                            "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(30)"],
                           stdout=subprocess.PIPE, text=True)
  try:
    assert child.stdout.readline().strip() == "ready"
    sampler = memory.PeakRss(os.getpid(), interval_s=0.05)
    own = psutil.Process().memory_info().rss
    peak = sampler.stop()
    assert peak >= own + 190 * 2**20
  finally:
    child.kill()
    child.wait()
  assert memory.tree_rss_bytes(child.pid) == 0  # Exited: nothing left to count.


def test_labelled_peaks_are_kept_per_label():
  calls = []
  done = threading.Event()

  def label():  # "a", "b", then unlabelled samples.
    calls.append(None)
    if len(calls) > 4:
      done.set()
    return {1: "a", 2: "b"}.get(len(calls))

  sampler = memory.PeakRss(os.getpid(), interval_s=0.01, label=label)
  assert done.wait(10)
  peak = sampler.stop()
  assert set(sampler.peaks) == {"a", "b"}
  assert 0 < sampler.peaks["a"] <= peak and 0 < sampler.peaks["b"] <= peak
