"""`benchmarks/task_gen.py`: finding the Transform output it runs TaskGen on."""

import os

import pytest

from tests.benchmarks import scripts

benchmark = scripts.load("task_gen")


def test_the_newest_transform_output_is_used(tmp_path):
  for run in ("7", "12"):
    for split in ("train", "eval"):
      os.makedirs(tmp_path / "Transform" / "transformed_examples" / run / f"Split-{split}")
  splits = benchmark.transformed_splits(str(tmp_path))
  assert splits == {split: str(tmp_path / "Transform" / "transformed_examples" / "12" /
                               f"Split-{split}") for split in ("train", "eval")}


def test_missing_output_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no Transform output under"):
    benchmark.transformed_splits(str(tmp_path))
  os.makedirs(tmp_path / "Transform" / "transformed_examples" / "3" / "Split-train")
  with pytest.raises(FileNotFoundError, match="Split-eval"):
    benchmark.transformed_splits(str(tmp_path))
