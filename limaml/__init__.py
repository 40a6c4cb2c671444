"""The `limaml` command line: one console script over the LiMAML packages.

`limaml.cli` parses arguments; each command group lives in its own
`*_command.py` module and imports the package it drives (`limaml_keras`,
`tfx_pipeline`, `serving`) only when the command runs, so `limaml --help`
never imports TensorFlow.
"""
