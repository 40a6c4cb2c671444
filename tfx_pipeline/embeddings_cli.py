"""`limaml embeddings generate`: the meta-embeddings Beam job from the command line.

    limaml embeddings generate --model SAVED_MODEL --tasks 'GLOB' --output DIR
        [--model-version V] [--batch-size N] [--beam-arg=--runner=...]

Reads TaskGen task records, adapts the Trainer's SavedModel (`adapt`
signature) to every member and writes `meta_embeddings-*.tfrecord.gz` and
`meta_embeddings-*.parquet` under DIR (`tfx_pipeline.embedding_job`). Prints
the job's counters as one JSON line.
"""

import argparse
import json
import os


def register(subparsers) -> None:
  """Adds the `embeddings` command (with `generate`) to the `limaml` CLI."""
  parser = subparsers.add_parser(
      "embeddings", help="meta embeddings: adapt the trained model to every member (Beam)",
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="embeddings_command", metavar="SUBCOMMAND")
  commands.required = True
  generate = commands.add_parser("generate", help="run the meta-embeddings Beam job")
  generate.add_argument("--model", required=True,
                        help="SavedModel directory with an `adapt` signature")
  generate.add_argument("--tasks", required=True, action="append",
                        help="glob of gzipped task-record files (repeatable)")
  generate.add_argument("--output", required=True, help="output directory")
  generate.add_argument("--model-version",
                        help="version stored with every row (default: the model "
                        "directory's name)")
  generate.add_argument("--batch-size", type=int, default=256,
                        help="members per `adapt` call (default: %(default)s)")
  generate.add_argument("--beam-arg", action="append", metavar="ARG",
                        help="a Beam pipeline argument, repeatable; write it as "
                        "--beam-arg=--runner=DataflowRunner (default: DirectRunner)")
  generate.set_defaults(func=_generate)


def _generate(args) -> int:
  """`limaml embeddings generate`."""
  from tfx_pipeline import embedding_job  # pylint: disable=g-import-not-at-top
  if args.batch_size < 1:
    raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
  version = args.model_version or os.path.basename(os.path.normpath(args.model))
  counters = embedding_job.run(args.model, args.tasks, args.output, version,
                               beam_args=args.beam_arg, batch_size=args.batch_size)
  print(json.dumps({"output": os.path.abspath(args.output), "model_version": version,
                    **counters}))
  return 0
