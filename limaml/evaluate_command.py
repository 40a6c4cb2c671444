"""`limaml evaluate`: compare LiMAML with its baselines on a dataset (see `experiment.evaluate`)."""

import argparse

from limaml_keras.evaluation import datasets
from limaml_keras.evaluation.method_names import METHODS


def register(subparsers) -> None:
  """Adds the `evaluate` command to the `limaml` CLI."""
  parser = subparsers.add_parser(
      "evaluate", help="compare LiMAML with its baselines (time-based protocol)",
      description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  parser.add_argument("--dataset", choices=datasets.DATASETS, default="synthetic")
  parser.add_argument("--data-dir", help="dataset files (required for movielens-100k)")
  parser.add_argument("--output", default="outputs/evaluation",
                      help="directory for results.json and report.html")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
  parser.add_argument("--tune", action="store_true",
                      help="search hyper-parameters on a validation split first")
  parser.add_argument("--epochs", type=_positive_int, help="override every method's epochs")
  parser.set_defaults(func=_run)


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value <= 0:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
  return value


def _run(args) -> int:
  from limaml_keras.evaluation import experiment  # pylint: disable=g-import-not-at-top
  record = experiment.evaluate(args.dataset, args.output, data_dir=args.data_dir,
                               seeds=args.seeds, methods=args.methods, tune=args.tune,
                               epochs=args.epochs, log=lambda m: print(m, flush=True))
  print(f"wrote {args.output}/results.json and {args.output}/report.html "
        f"({record['seconds']} s)")
  return 0
