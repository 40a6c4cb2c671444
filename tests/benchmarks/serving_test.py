"""`benchmarks/serving.py`: personalised, cold-start and global latencies on the dev server."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests.benchmarks import scripts

serving_benchmark = scripts.load("serving")

KINDS = ("personalised", "cold_start", "global")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
  """The benchmark's two models (5 members in the table), built once for the module."""
  return serving_benchmark.build_models(str(tmp_path_factory.mktemp("serving")), 5)


def _model_args(models):
  return ["--personalised-base-path", models["limaml"], "--global-base-path", models["global"]]


@pytest.mark.slow  # exports SavedModels
def test_build_models_exports_version_1_of_both(models):
  assert set(models) == {"limaml", "global"}
  for path in models.values():
    assert os.listdir(path) == ["1"]
    assert os.path.isfile(os.path.join(path, "1", "saved_model.pb"))


@pytest.mark.slow  # exports SavedModels and starts a server
def test_each_kind_gets_its_latencies(models):
  result = serving_benchmark.main(["--requests", "10", "--candidates", "3", *_model_args(models)])
  assert set(result) == {*KINDS, "candidates", "requests_per_kind",
                         "personalised_vs_global_p50", "cold_start_vs_global_p50"}
  assert (result["candidates"], result["requests_per_kind"]) == (3, 10)
  for kind in KINDS:
    assert set(result[kind]) == {"p50_ms", "p99_ms", "throughput_rps"}
    assert 0 < result[kind]["p50_ms"] <= result[kind]["p99_ms"]
    assert result[kind]["throughput_rps"] > 0
  for ratio, kind in (("personalised_vs_global_p50", "personalised"),
                      ("cold_start_vs_global_p50", "cold_start")):
    assert result[ratio] == pytest.approx(result[kind]["p50_ms"] / result["global"]["p50_ms"],
                                          abs=1e-3)


@pytest.mark.slow  # exports SavedModels and starts a server
def test_member_missing_from_the_table_is_named(models):
  with pytest.raises(SystemExit, match="member '8' is not in the personalised model's table"):
    serving_benchmark.main(["--requests", "10", "--member-id", "8", *_model_args(models)])


def test_candidate_examples_score_one_member_on_alternating_items():
  examples = serving_benchmark.candidate_examples("7", 4)
  assert examples.dtype == object and examples.shape == (4,)
  parsed = [tf.train.Example.FromString(e).features.feature for e in examples]
  assert [f["member_id"].int64_list.value[0] for f in parsed] == [7] * 4
  assert [f["item_id"].bytes_list.value[0] for f in parsed] == [b"x", b"y", b"x", b"y"]
  assert [f["year"].int64_list.value[0] for f in parsed] == [1990, 1991, 1992, 1993]


def test_percentiles_are_in_milliseconds():
  result = serving_benchmark.percentiles_ms(np.array([0.001, 0.002, 0.003]))
  assert result == {"p50_ms": 2.0, "p99_ms": pytest.approx(2.98), "throughput_rps": 500.0}


@pytest.mark.parametrize("argv, message", [
    (["--requests", "9"], "--requests must be >= 10"),
    (["--personalised-base-path", "/nowhere"], "give both --personalised-base-path and"),
])
def test_bad_flags_are_named(argv, message, capsys):
  with pytest.raises(SystemExit):
    serving_benchmark.main(argv)
  assert message in capsys.readouterr().err
