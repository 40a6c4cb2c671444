"""Concurrent `limaml embeddings refresh` runs on one model base path: are updates lost?

Prints one JSON object:

* `refreshes`: refresh processes started at once, each on a different member;
* `failed`: those that exited non-zero (then `failures`: each one's exit status and
  the end of its stderr);
* `updates_lost`: refreshed members whose embedding in the newest version is
  still the base version's (0 expected: refreshes of one base path are
  serialised by a lock, `tfx_pipeline.ops.refresh.base_path_lock`);
* `versions_pushed`: new versions under the base path (one per refresh);
* `wall_s`: seconds from the start of the first process to the end of the last.

The model is the tiny real Transform graph and untrained LiMAML model of
`tfx_pipeline.testing`, exported as the Trainer exports it; everything runs
in a temporary directory, on this machine, bounded by `--timeout`.
`scenario()` is the function `benchmarks/abuse.py` can call.

Usage: python benchmarks/refresh_race.py [--refreshes 2] [--timeout 600]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict

import numpy as np

# The member ids of `tfx_pipeline.testing`'s Transform vocabulary, and a
# refresh's new rows for each (raw columns of `testing.RAW_FEATURE_SPEC`).
_NEW_ROWS = {"7": [(7, "y", 60, 0, 24.0, 2010), (7, "y", 61, 0, 24.0, 2010)],
             "8": [(8, "x", 62, 1, 40.0, 1990), (8, "x", 63, 1, 40.0, 1990)]}
_BASE_ROWS = [(7, "x", 10, 1, 20.0, 1990), (7, "y", 20, 0, 22.0, 2000),
              (8, "y", 5, 1, 40.0, 2010)]


def _write_csv(path: str, header, rows) -> str:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  return path


def scenario(refreshes: int = 2, timeout_s: float = 600.0) -> Dict[str, object]:
  """Runs `refreshes` refresh processes at once; returns the JSON object's fields."""
  # pylint: disable=g-import-not-at-top
  from limaml_keras import schema
  from tfx_pipeline import testing
  from tfx_pipeline.models import export
  from tfx_pipeline.models import personalized_model
  from tfx_pipeline.ops import push
  from tfx_pipeline.ops import refresh
  # pylint: enable=g-import-not-at-top
  members = sorted(_NEW_ROWS)[:refreshes]
  if len(members) < refreshes:
    raise ValueError(f"at most {len(_NEW_ROWS)} refreshes (one per member of the test model)")
  with tempfile.TemporaryDirectory(prefix="limaml-refresh-race-") as root:
    header = list(testing.RAW_FEATURE_SPEC)
    transform_dir = os.path.join(root, "transform")
    tft_output = testing.transform_output(transform_dir)
    model_dir = export.export_serving_model(testing.untrained_model(tft_output), tft_output,
                                            os.path.join(root, "trainer"))
    base = os.path.join(root, "serving")
    refresh.refresh(model_dir, transform_dir,
                    [_write_csv(os.path.join(root, "base.csv"), header, _BASE_ROWS)], base,
                    max_support=5, version=1, feature_spec=testing.SPEC)
    before = dict(zip(*personalized_model.read_member_table(push.version_path(base, 1))))
    schema.save_spec(testing.SPEC, os.path.join(root, schema.SPEC_FILE_NAME))
    started = time.time()
    logs = [os.path.join(root, f"m{m}.stderr") for m in members]
    processes = []
    for m, log in zip(members, logs):
      with open(log, "wb") as stderr:  # The child keeps its own copy of the descriptor.
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "limaml.cli", "embeddings", "refresh", "--model", model_dir,
             "--transform-graph", transform_dir, "--interactions",
             _write_csv(os.path.join(root, f"m{m}.csv"), header, _NEW_ROWS[m]),
             "--model-base-path", base, "--max-support", "5"],
            stdout=subprocess.DEVNULL, stderr=stderr))
    failures = []
    for process, log in zip(processes, logs):
      try:
        code = process.wait(timeout=max(1.0, timeout_s - (time.time() - started)))
      except subprocess.TimeoutExpired:
        process.kill()
        code = "timeout"
      if code != 0:
        with open(log, encoding="utf-8", errors="replace") as f:
          failures.append(f"exit {code}: " + f.read()[-2000:])
    failed = len(failures)
    wall_s = time.time() - started
    latest = push.latest_version(base)
    after = dict(zip(*personalized_model.read_member_table(push.version_path(base, latest))))
    lost = sum(1 for m in members if np.allclose(after[m], before[m]))
    record = {"refreshes": refreshes, "failed": failed, "updates_lost": lost,
              "versions_pushed": len(push.list_versions(base)) - 1, "wall_s": round(wall_s, 1)}
    if failures:  # What each failed process said last, so a failure can be diagnosed.
      record["failures"] = failures
    return record


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--refreshes", type=int, default=2)
  parser.add_argument("--timeout", type=float, default=600.0)
  args = parser.parse_args()
  print(json.dumps(scenario(args.refreshes, args.timeout)))


if __name__ == "__main__":
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  main()
