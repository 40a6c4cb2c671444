"""How the pipeline's time and memory grow with the data: `limaml pipeline run` at two sizes.

For each size (interactions) it writes the synthetic data set with as many
members as give about that many interactions (the generator's activity
distribution, measured on a sample), runs `limaml pipeline run --data ...
--no-cache` in a fresh process with multi-processing Beam (2 workers; a
`--pipeline-arg=--beam-arg=...` replaces them), and samples the resident
memory of the whole process tree (the CLI, Beam's worker processes) every
`--sample-s` seconds. Prints one JSON object:

    sizes.<n>: interactions, members, seconds per component (from the CLI's
               progress lines), total_s (the CLI's whole run), peak_rss_mb,
               time_per_interaction_us, component_peak_rss_mb (the peak while each
               component ran)
    time_per_interaction_ratio, peak_rss_ratio: largest size / smallest size
    (with the default sizes: `time_per_interaction_1m / time_per_interaction_100k`
    and `peak_rss_1m / peak_rss_100k`); only when every run finished

A run stopped by `--timeout-s` reports what finished (`timed_out_after_s`,
`running_when_stopped`) instead of failing. `load_average` shows how shared
the machine was.

Usage: python benchmarks/pipeline_scale.py [--sizes 100000 1000000] [--epochs 1]
       [--workdir DIR] [--timeout-s 1800] [--keep]
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, Iterable, List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# The repository root, not this folder: `benchmarks/serving.py` must not shadow the `serving` package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.process_memory import PeakRss
from tfx_pipeline.pipeline import configs
# pylint: enable=g-import-not-at-top,wrong-import-position

#: `[3/14] Transform: done (12.3 s)` (and `cached`), as `limaml pipeline run` prints them.
_PROGRESS = re.compile(r"\[\d+/\d+\] (?P<component>[\w.-]+): (?:done|cached) \((?P<s>[\d.]+) s\)")
_STARTED = re.compile(r"\[\d+/\d+\] (?P<component>[\w.-]+): running")
_SAMPLE_MEMBERS = 2000


def component_seconds(lines: Iterable[str]) -> Dict[str, float]:
  """`{component: seconds}` from the CLI's progress lines (in run order)."""
  seconds = {}
  for line in lines:
    match = _PROGRESS.search(line)
    if match:
      seconds[match.group("component")] = float(match.group("s"))
  return seconds


class Progress:
  """The CLI's output lines as they arrive, and the component running now.

  `running` is the component that has started and not finished (None when none).
  """

  def __init__(self):
    self.lines: List[str] = []
    self.running: Optional[str] = None

  def add(self, line: str) -> None:
    self.lines.append(line)
    started = _STARTED.search(line)
    if started:
      self.running = started.group("component")
    elif _PROGRESS.search(line):
      self.running = None


def members_for(interactions: int, seed: int = 0) -> int:
  """Members whose synthetic data hold about `interactions` interactions."""
  from limaml_keras import synthetic  # pylint: disable=g-import-not-at-top
  from tfx_pipeline.pipeline import configs  # pylint: disable=g-import-not-at-top
  sample = synthetic.generate(num_members=_SAMPLE_MEMBERS, num_items=configs.SYNTHETIC_ITEMS,
                              seed=seed)
  per_member = len(sample.interactions) / _SAMPLE_MEMBERS
  return max(10, round(interactions / per_member))


def write_data(directory: str, members: int, seed: int = 0) -> (str, int):
  """The synthetic CSV (and its spec) of `members` members; returns `(path, interactions)`."""
  from limaml_keras import schema  # pylint: disable=g-import-not-at-top
  from limaml_keras import synthetic  # pylint: disable=g-import-not-at-top
  from tfx_pipeline.pipeline import configs  # pylint: disable=g-import-not-at-top
  data = synthetic.generate(num_members=members, num_items=configs.SYNTHETIC_ITEMS, seed=seed)
  path = synthetic.write_csv(data, os.path.join(directory, "interactions.csv"))
  schema.save_spec(data.spec, os.path.join(directory, schema.SPEC_FILE_NAME))
  return path, len(data.interactions)


def with_local_beam_args(extra_args: List[str]) -> List[str]:
  """`extra_args` plus the multi-processing Beam arguments, unless they set `--beam-arg`.

  The measured setting is always multi-processing (the CLI itself would run
  small data in memory: `configs.local_beam_pipeline_args`).
  """
  if any(arg.startswith("--beam-arg") for arg in extra_args):
    return list(extra_args)
  return list(extra_args) + [f"--beam-arg={arg}"
                             for arg in configs.MULTI_PROCESSING_BEAM_PIPELINE_ARGS]


def run_pipeline(data: str, output: str, epochs: int, timeout_s: float, sample_s: float,
                 extra_args: List[str]) -> dict:
  """Runs `limaml pipeline run` on `data`; returns component seconds, total and peak RSS.

  `component_peak_rss_mb` is the peak RSS sampled while each component ran
  (read from the CLI's progress lines as they are printed).
  """
  command = [sys.executable, "-m", "limaml.cli", "pipeline", "run", "--data", data, "--output",
             output, "--no-cache", "--epochs", str(epochs), *extra_args]
  started = time.time()
  # Its own session, so a timeout stops Beam's worker processes too.
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
  progress = Progress()
  rss = PeakRss(process.pid, sample_s, label=lambda: progress.running)
  timed_out = threading.Event()

  def stop():
    if process.poll() is None:  # Not when it exited just before the limit.
      timed_out.set()
      os.killpg(process.pid, signal.SIGKILL)

  timer = threading.Timer(timeout_s, stop)
  timer.start()
  for line in process.stdout:
    progress.add(line.rstrip("\n"))
  process.wait()
  timer.cancel()
  total = time.time() - started
  peak = rss.stop()
  if process.returncode and not timed_out.is_set():
    raise RuntimeError(f"pipeline run failed ({process.returncode}):\n"
                       + "\n".join(progress.lines[-60:]))
  result = {"components_s": component_seconds(progress.lines),
            "total_s": round(total, 1), "peak_rss_mb": round(peak / 2**20, 1),
            "component_peak_rss_mb": {name: round(value / 2**20, 1)
                                      for name, value in rss.peaks.items()}}
  if timed_out.is_set():  # What finished before the limit, honestly labelled.
    result["timed_out_after_s"] = timeout_s
    result["running_when_stopped"] = progress.running
  return result


def _ratio_names(sizes: List[int]) -> Optional[tuple]:
  if sorted(sizes) == [100_000, 1_000_000]:
    return ("time_per_interaction_1m / time_per_interaction_100k", "peak_rss_1m / peak_rss_100k")
  return None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000],
                      help="interactions per run (about)")
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--workdir", help="where data and outputs go (default: a temp dir)")
  parser.add_argument("--timeout-s", type=float, default=1800.0, help="limit of one run")
  parser.add_argument("--sample-s", type=float, default=0.5, help="RSS sampling interval")
  parser.add_argument("--keep", action="store_true", help="keep data and outputs")
  parser.add_argument("--pipeline-arg", action="append", default=[],
                      help="more `limaml pipeline run` arguments, e.g. --pipeline-arg=--no-baseline")
  args = parser.parse_args()
  if min(args.sizes) < 100 or args.epochs < 1:
    parser.error("--sizes must be >= 100 interactions and --epochs >= 1")
  workdir = args.workdir or tempfile.mkdtemp(prefix="pipeline_scale-")
  results = {}
  try:
    for size in args.sizes:
      directory = os.path.join(workdir, f"n{size}")
      shutil.rmtree(directory, ignore_errors=True)
      members = members_for(size)
      data, interactions = write_data(os.path.join(directory, "input"), members)
      run = run_pipeline(data, os.path.join(directory, "output"), args.epochs, args.timeout_s,
                         args.sample_s, with_local_beam_args(args.pipeline_arg))
      run.update(interactions=interactions, members=members,
                 time_per_interaction_us=round(run["total_s"] / interactions * 1e6, 2))
      results[str(size)] = run
  finally:
    if not args.keep and not args.workdir:
      shutil.rmtree(workdir, ignore_errors=True)
  out = {"cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
         "epochs": args.epochs, "sizes": results}
  small, large = results[str(min(args.sizes))], results[str(max(args.sizes))]
  complete = not any("timed_out_after_s" in r for r in (small, large))
  if len(results) > 1 and complete:
    out["time_per_interaction_ratio"] = round(
        large["time_per_interaction_us"] / small["time_per_interaction_us"], 3)
    out["peak_rss_ratio"] = round(large["peak_rss_mb"] / small["peak_rss_mb"], 3)
    names = _ratio_names(args.sizes)
    if names:
      out[names[0]], out[names[1]] = out["time_per_interaction_ratio"], out["peak_rss_ratio"]
  print(json.dumps(out))


if __name__ == "__main__":
  main()
