"""The `limaml` command line: one entry point, one sub-command per job.

    limaml demo                 the main job end-to-end on embedded synthetic data
    limaml evaluate ...         compare LiMAML with its baselines on a dataset
    limaml pipeline run|compile the TFX pipeline (local run, Kubeflow V2 spec)
    limaml embeddings generate  the Beam meta-embedding job over task records
    limaml serve ...            run and query the serving model (gRPC / REST)

Sub-commands live next to the code they drive and register themselves with
`register(subparsers)`; heavy imports happen only when a command runs.
"""

import argparse
import importlib
import logging
import os
import sys
from typing import List, Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# Modules that expose `register(subparsers)`, in help order.
_COMMAND_MODULES = (
    "limaml_keras.demo",
    "limaml_keras.evaluation.cli",
    "tfx_pipeline.cli",
    "tfx_pipeline.embeddings_cli",
    "serving.cli",
)


class UsageError(Exception):
  """A bad command-line value; printed as `limaml: error: ...` with exit code 2."""


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="limaml", description="LiMAML: meta-learned personalisation for TFX and TF Serving.")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  subparsers.required = True
  for module_name in _COMMAND_MODULES:
    try:
      module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
      if e.name == module_name or module_name.startswith(f"{e.name}."):
        continue  # That part of the package is not built yet.
      raise
    module.register(subparsers)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  """Runs `limaml`; returns the process exit code."""
  logging.getLogger("tensorflow").setLevel(logging.ERROR)  # retracing notices etc.
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    return int(args.func(args) or 0)
  except UsageError as e:
    parser.error(str(e))
  except (ValueError, FileNotFoundError) as e:
    print(f"limaml {args.command}: error: {e}", file=sys.stderr)
    return 1


if __name__ == "__main__":
  sys.exit(main())
