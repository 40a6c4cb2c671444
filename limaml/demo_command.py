"""`limaml demo`: the main job end to end on embedded synthetic data.

1. Compares LiMAML with its baselines on the seeded synthetic data under the
   production-like time protocol and prints the table (`limaml evaluate`).
2. Runs the TFX pipeline (ingest → validate → transform → tasks → train →
   meta embeddings → evaluate against the global baseline → push) on the same
   kind of data with the local runner (`limaml pipeline run`, Beam in memory).
3. Starts the dev server (`serving.dev_server`, the TF Serving APIs) on the
   pushed model and prints the top-k items of a few members, warm and cold
   start, asked over gRPC (`serving.top_k.show_top_k`).

`--skip-pipeline` stops after step 1.
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
  print("== 1/3 LiMAML vs baselines on synthetic data (time-based protocol)", flush=True)
  experiment.evaluate("synthetic", os.path.join(args.output, "evaluation"), seeds=args.seeds,
                      log=lambda m: print(m, flush=True))
  print(f"report: {os.path.join(args.output, 'evaluation', 'report.html')}", flush=True)
  if args.skip_pipeline:
    return 0
  print("== 2/3 TFX pipeline on synthetic data (LocalDagRunner, Beam DirectRunner)", flush=True)
  # pylint: disable=g-import-not-at-top
  from limaml import cli
  from tfx_pipeline import local_runner
  # pylint: enable=g-import-not-at-top
  paths = local_runner.LocalPaths(os.path.abspath(os.path.join(args.output, "pipeline")))
  pipeline_args = cli.build_parser().parse_args(["pipeline", "run", "--output", paths.output_dir])
  code = pipeline_args.func(pipeline_args)
  if code:
    return code
  print("== 3/3 Serving the pushed model (dev server, TF Serving gRPC API)", flush=True)
  from tfx_pipeline.ops import push  # pylint: disable=g-import-not-at-top
  if push.latest_version(paths.serving_model_dir) is None:
    print(f"nothing to serve: no version in {paths.serving_model_dir} (the Evaluator did not "
          "bless the model)", flush=True)
    return 0
  from serving import top_k as serving_demo  # pylint: disable=g-import-not-at-top
  serving_demo.show_top_k(paths.serving_model_dir,
                          os.path.join(paths.output_dir, "input", "interactions.csv"),
                          report=lambda block: print(block, flush=True))
  return 0
