"""`limaml demo`: the main job end to end on embedded synthetic data.

1. Compares LiMAML with its baselines on the seeded synthetic data under the
   production-like time protocol and prints the table (`limaml evaluate`).
2. Runs the TFX pipeline (ingest → validate → transform → tasks → train →
   push) on the same kind of data with the local runner, when `--skip-pipeline`
   is not given.
"""

import argparse
import os


def register(subparsers) -> None:
  """Adds the `demo` command to the `limaml` CLI."""
  parser = subparsers.add_parser("demo", help="run the main job end to end on synthetic data",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--output", default="outputs/demo", help="where everything is written")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0])
  parser.add_argument("--skip-pipeline", action="store_true", help="only run the comparison")
  parser.set_defaults(func=_run)


def _run(args) -> int:
  from limaml_keras.evaluation import experiment  # pylint: disable=g-import-not-at-top
  print("== 1/2 LiMAML vs baselines on synthetic data (time-based protocol)", flush=True)
  experiment.evaluate("synthetic", os.path.join(args.output, "evaluation"), seeds=args.seeds,
                      log=lambda m: print(m, flush=True))
  print(f"report: {os.path.join(args.output, 'evaluation', 'report.html')}", flush=True)
  if args.skip_pipeline:
    return 0
  print("== 2/2 TFX pipeline on synthetic data (LocalDagRunner, Beam DirectRunner)", flush=True)
  from limaml_keras import cli  # pylint: disable=g-import-not-at-top
  pipeline_args = cli.build_parser().parse_args(
      ["pipeline", "run", "--output", os.path.join(args.output, "pipeline")])
  return pipeline_args.func(pipeline_args)
