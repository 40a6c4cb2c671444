"""TaskGen's Beam job alone, on a pipeline run's Transform output: seconds and peak RSS.

TaskGen groups every interaction by member, the largest shuffle of the
pipeline; this measures it without the other components. Point it at the
pipeline root of a `limaml pipeline run --output DIR` (`DIR/pipeline`, e.g.
one kept by `benchmarks/pipeline_scale.py --keep`); it runs the job with the
newest Transform output as input, in the Beam mode given, and prints one JSON
object: `seconds`, `peak_rss_mb` (this process and Beam's worker processes),
`mode`, `tasks` (per split).

Usage: python benchmarks/task_gen.py PIPELINE_ROOT [--mode in_memory|multi_processing]
"""

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from typing import Dict

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# The repository root, not this folder: `benchmarks/serving.py` must not shadow the `serving` package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks.process_memory import PeakRss
# pylint: enable=g-import-not-at-top,wrong-import-position

_SPLITS = ("train", "eval")


def transformed_splits(pipeline_root: str) -> Dict[str, str]:
  """`{split: directory}` of the newest Transform output under `pipeline_root`.

  Raises:
    FileNotFoundError: naming what is missing.
  """
  runs = glob.glob(os.path.join(pipeline_root, "Transform", "transformed_examples", "*"))
  if not runs:
    raise FileNotFoundError(f"no Transform output under {pipeline_root!r} (give the pipeline "
                            "root of a `limaml pipeline run --output DIR`: DIR/pipeline)")
  newest = max(runs, key=lambda path: int(os.path.basename(path)) if
               os.path.basename(path).isdigit() else -1)
  splits = {split: os.path.join(newest, f"Split-{split}") for split in _SPLITS}
  missing = [path for path in splits.values() if not os.path.isdir(path)]
  if missing:
    raise FileNotFoundError(f"Transform output without {', '.join(missing)}")
  return splits


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("pipeline_root")
  parser.add_argument("--mode", choices=("in_memory", "multi_processing"),
                      default="multi_processing",
                      help="the pipeline's local Beam arguments (multi_processing: 2 workers)")
  args = parser.parse_args()
  try:
    splits = transformed_splits(args.pipeline_root)
  except FileNotFoundError as e:
    parser.error(str(e))
  # pylint: disable=g-import-not-at-top
  import apache_beam as beam
  from tfx_pipeline.components import task_gen
  from limaml_keras.task_settings import DEFAULTS
  from tfx_pipeline.pipeline import configs
  # pylint: enable=g-import-not-at-top
  beam_args = {"in_memory": configs.IN_MEMORY_BEAM_PIPELINE_ARGS,
               "multi_processing": configs.MULTI_PROCESSING_BEAM_PIPELINE_ARGS}[args.mode]
  output = tempfile.mkdtemp(prefix="task_gen-")
  sampler = PeakRss(os.getpid(), interval_s=0.5)
  started = time.time()
  with beam.Pipeline(argv=list(beam_args)) as pipeline:
    task_gen.build_task_pipeline(pipeline, splits, output, DEFAULTS)
  seconds = time.time() - started
  peak = sampler.stop()
  statistics = task_gen.read_statistics(output)
  print(json.dumps({"mode": args.mode, "seconds": round(seconds, 1),
                    "peak_rss_mb": round(peak / 2**20),
                    "tasks": {split: statistics[split]["tasks"] for split in _SPLITS}}))


if __name__ == "__main__":
  main()
