"""`benchmarks/task_gen.py`: finding the Transform output it runs TaskGen on."""

import importlib.util
import os

import pytest

_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks", "task_gen.py")
_SPEC = importlib.util.spec_from_file_location("task_gen_benchmark", _PATH)
benchmark = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(benchmark)


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
