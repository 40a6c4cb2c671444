"""`benchmarks/load.py`: concurrent gRPC and REST clients on the dev server, across a version
push."""

import os
import re
import shutil

import pytest

from tests.benchmarks import scripts

load = scripts.load("load")

CLIENTS = 5  # Client 4 (every fifth) uses REST, the others gRPC.


@pytest.fixture(scope="module")
def model(tmp_path_factory):
  """Base path of the benchmark's personalised model, version 1 (as `main` builds it)."""
  root = str(tmp_path_factory.mktemp("load"))
  return load.serving_benchmark.build_models(root, 10)["limaml"]


@pytest.mark.slow  # exports SavedModels and starts a server
def test_no_request_fails_across_the_push_and_both_versions_answer(model, tmp_path):
  base = str(tmp_path / "limaml")
  shutil.copytree(model, base)
  result = load.main(["--clients", str(CLIENTS), "--duration-s", "8", "--candidates", "2",
                      "--model-base-path", base])
  assert set(result) == {"clients", "duration_s", "candidates", "requests", "failed_requests",
                         "throughput_rps", "p50_ms", "p99_ms", "versions_served", "swap_s",
                         "first_failures"}
  assert (result["clients"], result["candidates"]) == (CLIENTS, 2)
  assert result["failed_requests"] == 0, result["first_failures"]
  assert result["first_failures"] == []
  assert result["requests"] >= CLIENTS  # Every client got answers.
  assert result["versions_served"] == [1, 2]
  assert result["swap_s"] is not None
  assert 0 < result["p50_ms"] <= result["p99_ms"]
  assert result["throughput_rps"] > 0
  # The push: a complete copy renamed into place, nothing left of its scratch directory.
  assert sorted(os.listdir(base)) == ["1", "2"]
  assert sorted(os.listdir(os.path.join(base, "2"))) == sorted(os.listdir(os.path.join(model, "1")))


def test_push_copy_renames_a_complete_copy(tmp_path):
  (tmp_path / "3" / "variables").mkdir(parents=True)
  (tmp_path / "3" / "variables" / "data").write_text("weights")
  load.push_copy(str(tmp_path), 3, 4)
  assert sorted(os.listdir(tmp_path)) == ["3", "4"]
  assert (tmp_path / "4" / "variables" / "data").read_text() == "weights"


@pytest.mark.parametrize("argv, message", [
    (["--clients", "0"], "--clients, --duration-s and --candidates must be positive"),
    (["--duration-s", "-1"], "--clients, --duration-s and --candidates must be positive"),
])
def test_bad_flags_are_named(argv, message, capsys):
  with pytest.raises(SystemExit):
    load.main(argv)
  assert message in capsys.readouterr().err


def test_base_path_without_a_version_is_named(tmp_path):
  with pytest.raises(SystemExit, match=re.escape(f"no version directory in {tmp_path}")):
    load.main(["--model-base-path", str(tmp_path)])
