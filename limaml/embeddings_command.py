"""`limaml embeddings generate|refresh`: the meta-embeddings Beam job from the command line.

    limaml embeddings generate --model SAVED_MODEL --output DIR
        (--tasks 'GLOB' | --interactions 'CSV GLOB' --transform-graph DIR [--max-support N])
        [--model-version V] [--batch-size N] [--rows-per-shard N] [--beam-arg=--runner=...]

    limaml embeddings refresh --model SAVED_MODEL --transform-graph DIR
        --interactions 'CSV GLOB' --model-base-path DIR [--max-support N] [--version V]
        [--spec FEATURES_JSON] [--batch-size N] [--beam-arg=--runner=...]

`generate` adapts the Trainer's SavedModel (`adapt` signature) to every member
of TaskGen task records (`--tasks`) or of raw interaction CSVs (each member's
latest `--max-support` interactions, transformed by `--transform-graph`) and
writes `meta_embeddings-*.tfrecord.gz`, `meta_embeddings-*.parquet` and
`counters.json` under DIR (`tfx_pipeline.beam.embedding_job`); DIR appears only
when the job succeeds. `refresh` regenerates the embeddings of the members in
the CSVs, merges them into the served version's table and pushes a new
version atomically (`tfx_pipeline.ops.refresh`); concurrent refreshes of one
base path wait for each other (`--lock-timeout`). Both print one JSON line
with the counts of the input checks; each fallback taken on the input (rows
dropped, ids stripped, members skipped, files of a directory skipped) is also
printed as a `note:` line on stderr, as `limaml pipeline run` does.
"""

import dataclasses
import json
import os
import sys

from limaml import cli
from limaml_keras import task_settings


def _add_job_arguments(parser) -> None:
  parser.add_argument("--model", required=True,
                      help="the Trainer's SavedModel directory (with an `adapt` signature)")
  parser.add_argument("--max-support", type=int, default=task_settings.DEFAULTS.max_support,
                      help="with --interactions: latest interactions kept per member "
                      "(default: %(default)s)")
  parser.add_argument("--batch-size", type=int, default=256,
                      help="members per `adapt` call (default: %(default)s)")
  cli.add_as_of_argument(parser, "with --interactions: ")
  cli.add_beam_arguments(parser)


def register(subparsers) -> None:
  """Adds the `embeddings` command (`generate`, `refresh`) to the `limaml` CLI."""
  commands = cli.add_command_group(
      subparsers, "embeddings",
      "meta embeddings: adapt the trained model to every member (Beam)", __doc__)
  generate = commands.add_parser("generate", help="run the meta-embeddings Beam job")
  _add_job_arguments(generate)
  source = generate.add_mutually_exclusive_group(required=True)
  source.add_argument("--tasks", action="append",
                      help="glob of gzipped TaskGen task-record files (repeatable)")
  source.add_argument("--interactions", action="append",
                      help="glob of raw interaction CSV files (repeatable; needs "
                      "--transform-graph)")
  generate.add_argument("--transform-graph",
                        help="with --interactions: the Transform component's transform_graph")
  generate.add_argument("--output", required=True, help="output directory (new or empty)")
  generate.add_argument("--model-version",
                        help="version stored with every row (default: the model "
                        "directory's name)")
  generate.add_argument("--rows-per-shard", type=int, default=50_000,
                        help="about this many members per output shard (default: %(default)s)")
  generate.set_defaults(func=_generate)

  refresh = commands.add_parser(
      "refresh", help="new interactions -> new embeddings -> a new serving version")
  _add_job_arguments(refresh)
  refresh.add_argument("--transform-graph", required=True,
                       help="the Transform component's transform_graph")
  refresh.add_argument("--interactions", required=True, action="append",
                       help="glob of raw interaction CSV files with the members' recent "
                       "interactions (repeatable)")
  refresh.add_argument("--model-base-path", required=True,
                       help="TF Serving model base path; its latest version is the base")
  refresh.add_argument("--version", type=int,
                       help="new version number (default: max(now, latest + 1))")
  refresh.add_argument("--spec", help="the data's feature spec JSON, for the new version's "
                       "warmup records (default: features.json beside the first CSV)")
  refresh.add_argument("--lock-timeout", type=float, default=600.0,
                       help="seconds to wait for another refresh of the same base path "
                       "(default: %(default)s)")
  refresh.set_defaults(func=_refresh)


def _check_sizes(args) -> None:
  for flag in ("max_support", "batch_size", "rows_per_shard"):
    value = getattr(args, flag, 1)
    if value < 1:
      raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got {value}")


def _print_notes(notes) -> None:
  for note in notes:
    print(f"note: {note}", file=sys.stderr)


def _generate(args) -> int:
  """`limaml embeddings generate`."""
  # pylint: disable=g-import-not-at-top
  from tfx_pipeline.beam import embedding_job
  from tfx_pipeline.beam import member_supports
  # pylint: enable=g-import-not-at-top
  _check_sizes(args)
  version = args.model_version or os.path.basename(os.path.normpath(args.model))
  if args.tasks:
    if args.as_of is not None:
      raise ValueError("--as-of goes with --interactions, not --tasks")
    if args.transform_graph:
      raise ValueError("--transform-graph goes with --interactions, not --tasks")
    counters = embedding_job.run(args.model, args.tasks, args.output, version,
                                 beam_args=args.beam_arg, batch_size=args.batch_size,
                                 rows_per_shard=args.rows_per_shard)
  else:
    if not args.transform_graph:
      raise ValueError("--interactions needs --transform-graph (the Transform graph the "
                       "model was trained with)")
    counters = member_supports.run_csv(args.model, args.transform_graph, args.interactions,
                                       args.output, version, max_support=args.max_support,
                                       beam_args=args.beam_arg or (),
                                       batch_size=args.batch_size,
                                       rows_per_shard=args.rows_per_shard, as_of=args.as_of)
    _print_notes(counters["notes"])
  print(json.dumps({"output": os.path.abspath(args.output), "model_version": version,
                    **counters}))
  return 0


def _refresh(args) -> int:
  """`limaml embeddings refresh`."""
  from tfx_pipeline.ops import refresh  # pylint: disable=g-import-not-at-top
  from limaml_keras import schema  # pylint: disable=g-import-not-at-top
  _check_sizes(args)
  result = refresh.refresh(args.model, args.transform_graph, args.interactions,
                           args.model_base_path, max_support=args.max_support,
                           beam_args=args.beam_arg or (), batch_size=args.batch_size,
                           version=args.version,
                           feature_spec=schema.load_spec(args.spec) if args.spec else None,
                           as_of=args.as_of, lock_timeout_s=args.lock_timeout)
  _print_notes(result.notes)
  print(json.dumps(dataclasses.asdict(result)))
  return 0
