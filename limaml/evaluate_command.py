"""`limaml evaluate`: compare LiMAML with its baselines on a dataset (see `experiment.evaluate`).

    limaml evaluate --dataset synthetic|movielens-100k [--data-dir DIR]
    limaml evaluate --data CSV|DIR [--spec features.json]

`--data` takes the same input as `limaml pipeline run`: a raw-schema CSV, a
directory of CSVs, or a directory split into train/ and eval/ (read as one
input: the protocol splits it), checked by the same rules, with the feature
spec found the same way (features.json next to the data, or --spec).

Protocols: `time` (one global cutoff, as in production), `member` (each
member's latest 20 % of interactions are query, earlier ones training data and
support) and `member-heldout` (`member` with 20 % of members kept out of
training; only they are scored). Every method is also scored with support
truncated to the latest n interactions (the few-shot curve), n up to
--max-support (the support cap; default: the pipeline's).

Writes results.json and report.html to --output, and TensorBoard logs (one run
per method and seed) to --tensorboard-dir: `tensorboard --logdir DIR`.
"""

import argparse
import os

from limaml import cli
from limaml_keras import task_settings
from limaml_keras.evaluation import datasets
from limaml_keras.evaluation.method_names import METHODS
from limaml_keras.evaluation.protocol_names import PROTOCOLS


def register(subparsers) -> None:
  """Adds the `evaluate` command to the `limaml` CLI."""
  parser = subparsers.add_parser(
      "evaluate", help="compare LiMAML with its baselines (time or per-member protocol)",
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  source = parser.add_mutually_exclusive_group()
  source.add_argument("--dataset", choices=datasets.DATASETS,
                      help="a built-in dataset (default: synthetic)")
  source.add_argument("--data", help="a raw-schema CSV, a directory of CSVs, or a directory "
                      "with train/ and eval/ (the `limaml pipeline run --data` contract)")
  parser.add_argument("--spec", help="feature spec JSON for --data (default: features.json "
                      "next to the data)")
  cli.add_as_of_argument(parser, "with --data: ")
  parser.add_argument("--data-dir", help="dataset files (required for movielens-100k)")
  parser.add_argument("--protocol", choices=PROTOCOLS, default="time",
                      help="evaluation protocol (default: %(default)s)")
  parser.add_argument("--output", default="outputs/evaluation",
                      help="directory for results.json and report.html (default: %(default)s)")
  parser.add_argument("--tensorboard-dir",
                      help="TensorBoard log root (default: OUTPUT/tensorboard)")
  parser.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                      help="model seeds (default: %(default)s)")
  parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
  parser.add_argument("--settings-from", metavar="NAME",
                      help="use the tuned settings of this dataset, or 'defaults' for the "
                      "library defaults (default: the dataset's own; the settings tuned on "
                      "real data, with a note, when it has none)")
  parser.add_argument("--set", action="append", default=[], metavar="METHOD.FIELD=VALUE",
                      dest="overrides", help="change one setting of one method, repeatable, "
                      "e.g. --set limaml.task_history=50 --set limaml.train_support_sizes=0,1,5 "
                      "(fields: limaml_keras.evaluation.methods.Hyperparameters)")
  parser.add_argument("--tune", action="store_true",
                      help="search hyper-parameters on a validation split first")
  parser.add_argument("--epochs", type=_positive_int, help="override every method's epochs")
  parser.add_argument("--max-support", type=_positive_int,
                      default=task_settings.DEFAULTS.max_support,
                      help="support cap of the scored members: their latest interactions "
                      "(default: the pipeline's, %(default)s)")
  parser.set_defaults(func=_run)


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
  if value <= 0:
    raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
  return value


def input_files(data_path: str):
  """The CSV files of `--data`: the file, a directory's `*.csv`, or train/ and eval/ of a split root.

  Raises:
    FileNotFoundError: no such path, or no CSV in it.
  """
  from tfx_pipeline.ops import input_data  # pylint: disable=g-import-not-at-top
  if os.path.isdir(data_path) and input_data.is_split_root(data_path):
    return [f for d in (input_data.TRAIN_DIR, input_data.EVAL_DIR)
            for f in input_data.csv_files(os.path.join(data_path, d))]
  return input_data.csv_files(data_path)


def _load_data(args, log):
  """`(name, (frame, spec))` of `--data`, or `(dataset name, None)`."""
  if not args.data:
    return args.dataset or "synthetic", None
  from limaml_keras import schema  # pylint: disable=g-import-not-at-top
  files = input_files(args.data)
  spec = schema.load_spec(args.spec or schema.find_spec_file(args.data))
  frame, notes = datasets.load_csv(files, spec, as_of=args.as_of)
  for note in notes:
    log(f"note: {note}")
  name = os.path.splitext(os.path.basename(os.path.normpath(args.data)))[0]
  return name, (frame, spec)


def _run(args) -> int:
  from limaml_keras.evaluation import experiment  # pylint: disable=g-import-not-at-top
  log = lambda message: print(message, flush=True)  # pylint: disable=unnecessary-lambda-assignment
  if args.spec and not args.data:
    raise ValueError("--spec applies to --data only")
  name, data = _load_data(args, log)
  tensorboard_dir = None if args.no_tensorboard else (args.tensorboard_dir or "")
  record = experiment.evaluate(name, args.output, data_dir=args.data_dir, seeds=args.seeds,
                               methods=args.methods, tune=args.tune, epochs=args.epochs,
                               log=log, protocol_name=args.protocol, data=data,
                               settings_from=args.settings_from,
                               tensorboard_dir=tensorboard_dir, overrides=args.overrides,
                               max_support=args.max_support)
  print(f"wrote {args.output}/results.json and {args.output}/report.html "
        f"({record['seconds']} s)")
  if record["tensorboard"]:
    print(f"TensorBoard logs: tensorboard --logdir {record['tensorboard']}")
  return 0
