"""The `limaml` command line: one entry point, one sub-command per job.

    limaml demo                 the main job end-to-end on embedded synthetic data
    limaml evaluate ...         compare LiMAML with its baselines on a dataset
    limaml pipeline run|compile the TFX pipeline (local run, Kubeflow V2 spec)
    limaml embeddings generate|refresh  meta embeddings (Beam); a new serving version
    limaml serve start|predict|status|metadata  the dev server and the TF Serving client

Sub-commands live next to the code they drive and register themselves with
`register(subparsers)`; heavy imports happen only when a command runs.
"""

import argparse
import importlib
import logging
import os
import sys
from typing import List, Optional

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable-next=wrong-import-position
from tfx_pipeline.pipeline import quiet_workers

# Modules that expose `register(subparsers)`, in help order.
_COMMAND_MODULES = (
    "limaml.demo_command",
    "limaml.evaluate_command",
    "limaml.pipeline_command",
    "limaml.embeddings_command",
    "limaml.serve_command",
)


class UsageError(Exception):
  """A bad command-line value; printed as `limaml: error: ...` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="limaml", description="LiMAML: meta-learned personalisation for TFX and TF Serving.")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  subparsers.required = True
  for module_name in _COMMAND_MODULES:
    importlib.import_module(module_name).register(subparsers)
  return parser


def add_as_of_argument(parser: argparse.ArgumentParser, condition: str = "") -> None:
  """Adds `--as-of UNIX_SECONDS` (`args.as_of`, None: now).

  Args:
    parser: the command's parser.
    condition: when the flag applies, e.g. "with --data: ".
  """
  parser.add_argument("--as-of", type=int, metavar="UNIX_SECONDS",
                      help=f"{condition}drop interactions later than this time, counted and "
                      "reported (default: now; set it to make reruns on data with future "
                      "timestamps reproducible)")


def add_beam_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds the repeatable `--beam-arg` (`args.beam_arg`, None: the command's defaults)."""
  parser.add_argument("--beam-arg", action="append", metavar="ARG",
                      help="a Beam pipeline argument, repeatable, replacing the defaults "
                      "(the DirectRunner); write it as --beam-arg=--runner=DataflowRunner")


def add_command_group(subparsers, name: str, help_text: str, description: str):
  """Adds command `name` with required sub-commands; returns their subparsers.

  Args:
    subparsers: the `limaml` parser's subparsers (`register`'s argument).
    name: the command, e.g. `pipeline`.
    help_text: one line for `limaml --help`.
    description: the command's `--help` text (usually its module docstring).
  """
  parser = subparsers.add_parser(name, help=help_text, description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
  commands.required = True
  return commands


def main(argv: Optional[List[str]] = None) -> int:
  """Runs `limaml`; returns the process exit code.

  Unless the command has `--verbose` set, the console stays quiet: the
  environment is set before any command imports TensorFlow, so its C++
  start-up notices and shutdown noise are not shown, here or in Beam worker
  processes (`tfx_pipeline.pipeline.quiet_workers`).
  """
  logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices etc.
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, "verbose", False):
    quiet_workers.quiet_environment()
    quiet_workers.install_shutdown_filter()
  try:
    return int(args.func(args) or 0)
  except UsageError as e:
    parser.error(str(e))
  except (ValueError, FileNotFoundError) as e:
    print(f"limaml {args.command}: error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
