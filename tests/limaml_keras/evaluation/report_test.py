"""report.html shows gAUC and AUC charts, the few-shot curve, the cutoff as a date; results.json has no NaN."""

import json

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
