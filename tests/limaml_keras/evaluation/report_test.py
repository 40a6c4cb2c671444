"""report.html shows gAUC and AUC charts, the few-shot curve, the cutoff as a date; results.json has no NaN."""

import json

import pytest

from limaml_keras import metrics
from limaml_keras.evaluation import report, runner

_NAN = float("nan")


def _results(seeds):
  slice_ = lambda: dict({s: [0.7] * seeds for s in runner.SCORES}, members=2, interactions=5)
  entry = dict(slice_(), training_loss=[[0.6, 0.5]] * seeds)
  entry["segments"] = {s: slice_() for s in metrics.SEGMENTS}
  entry["segments"]["0"] = dict({s: [_NAN] * seeds for s in runner.SCORES}, members=0,
                                interactions=0)
  entry["few_shot"] = {str(n): slice_() for n in (0, 1, 5)}
  return {"global": entry, "limaml": entry}


@pytest.mark.slow
def test_report_has_both_charts_few_shot_curve_and_date(tmp_path):
  record = {"dataset": "toy", "seeds": [0], "results": _results(1),
            "protocol": {"name": "time", "cutoff": 889237269,
                         "cutoff_date": "1998-03-07 02:21:09 UTC"}}
  page = open(report.write_html(record, str(tmp_path)), encoding="utf-8").read()
  for alt in ("gAUC by segment", "AUC by segment", "few-shot curve", "training curves"):
    assert f'alt="{alt}"' in page
  assert "1998-03-07" in page
  assert "± 0.0000" not in page and "one seed" in page
  assert f"<td>{runner.EMPTY}</td>" in page  # the empty cold-start slice is shown, not dropped


def test_results_json_writes_nan_as_null(tmp_path):
  record = {"dataset": "toy", "seeds": [0, 1], "results": _results(2)}
  loaded = json.load(open(report.write_results(record, str(tmp_path)), encoding="utf-8"))
  assert loaded["results"]["limaml"]["segments"]["0"]["gauc"] == [None, None]
  assert loaded["results"]["limaml"]["few_shot"]["5"]["gauc"] == [0.7, 0.7]


def _record(seed, gauc, **changes):
  results = _results(1)
  results = json.loads(json.dumps(results).replace("NaN", "null"))
  results["limaml"]["gauc"] = [gauc]
  record = {"dataset": "toy", "seeds": [seed], "results": results, "protocol": {"name": "member"},
            "hyperparameters": {"limaml": {"epochs": 5}}, "overrides": [], "seconds": 10.0}
  record.update(changes)
  return record


def test_merge_seed_runs_concatenates_per_seed_lists():
  merged = report.merge_seed_runs([_record(0, 0.6), _record(1, 0.7), _record(2, 0.8)])
  assert merged["seeds"] == [0, 1, 2] and merged["seconds"] == 30.0
  assert merged["results"]["limaml"]["gauc"] == [0.6, 0.7, 0.8]
  assert merged["results"]["limaml"]["few_shot"]["5"]["auc"] == [0.7, 0.7, 0.7]
  assert merged["results"]["limaml"]["segments"]["1-5"]["members"] == 2


def test_merge_refuses_runs_that_differ_beyond_seeds():
  with pytest.raises(ValueError, match="hyperparameters"):
    report.merge_seed_runs([_record(0, 0.6),
                            _record(1, 0.7, hyperparameters={"limaml": {"epochs": 9}})])
  with pytest.raises(ValueError, match="share seeds"):
    report.merge_seed_runs([_record(0, 0.6), _record(0, 0.7)])


def test_join_method_runs_takes_the_named_methods_from_the_other_run():
  base, other = _record(0, 0.6), _record(0, 0.8)
  other["hyperparameters"] = {"limaml": {"epochs": 9}}
  joined = report.join_method_runs(base, other, ["limaml"], names=("runs/base", "runs/rerun"))
  assert joined["results"]["limaml"]["gauc"] == [0.8]
  assert joined["results"]["global"] == base["results"]["global"]
  assert joined["hyperparameters"]["limaml"] == {"epochs": 9}
  assert joined["joined_from"] == {"global": "runs/base", "limaml": "runs/rerun"}
  assert base["results"]["limaml"]["gauc"] == [0.6]  # The inputs are not changed.


@pytest.mark.parametrize("changes, message", [
    ({"seeds": [1]}, "runs differ in 'seeds'"),
    ({"protocol": {"name": "time"}}, "runs differ in 'protocol'"),
])
def test_join_refuses_runs_of_another_split_or_seeds(changes, message):
  with pytest.raises(ValueError, match=message):
    report.join_method_runs(_record(0, 0.6), _record(0, 0.8, **changes), ["limaml"])


def test_join_names_a_method_the_other_run_lacks():
  other = _record(0, 0.8)
  del other["results"]["limaml"]
  with pytest.raises(ValueError, match=r"no results for \['limaml'\]"):
    report.join_method_runs(_record(0, 0.6), other, ["limaml"])


@pytest.mark.slow
def test_few_shot_png_is_a_png(tmp_path):
  path = report.write_few_shot_png(_results(2), str(tmp_path / "curve.png"))
  assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
