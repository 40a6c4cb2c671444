"""Tables of the runner: mean ± sample std, one seed without a spread, empty slices kept and shown."""

import math

from limaml_keras import metrics
from limaml_keras.evaluation import runner

_NAN = float("nan")


def _entry(values, empty_segment="6-20"):
  slice_ = lambda v: dict({s: list(v) for s in runner.SCORES}, members=3, interactions=9)
  entry = dict(slice_(values), training_loss=[[0.5]] * len(values))
  entry["segments"] = {s: slice_(values) for s in metrics.SEGMENTS}
  entry["segments"][empty_segment] = dict({s: [_NAN] * len(values) for s in runner.SCORES},
                                          members=0, interactions=0)
  entry["few_shot"] = {"0": slice_(values), "5": slice_(values)}
  return entry


def test_mean_std_is_the_sample_std_over_finite_values():
  mean, std = runner.mean_std([0.6, 0.7, 0.8, _NAN, None])
  assert math.isclose(mean, 0.7) and math.isclose(std, 0.1)


def test_one_seed_shows_no_spread_and_no_value_shows_empty():
  assert runner.format_mean_std(runner.mean_std([0.71234])) == "0.7123"
  assert runner.format_mean_std(runner.mean_std([_NAN])) == runner.EMPTY
  assert runner.format_mean_std(runner.mean_std([0.7, 0.8])) == "0.7500 ± 0.0707"


def test_tables_keep_empty_slices_and_every_metric():
  results = {"global": _entry([0.7]), "limaml": _entry([0.72])}
  tables = runner.summary_tables(results)
  titles = [t["title"] for t in tables]
  assert titles[0].startswith("Overall")
  assert tables[0]["columns"][1:5] == ["gAUC", "AUC", "log loss", "ECE"]
  assert {"gAUC by member-activity segment (support size)",
          "log loss by support truncated to the latest n"} <= set(titles)
  segment_table = tables[titles.index("gAUC by member-activity segment (support size)")]
  assert segment_table["columns"] == ["method"] + [
      f"{s} ({0 if s == '6-20' else 3} members)" for s in metrics.SEGMENTS]
  empty_column = segment_table["columns"].index("6-20 (0 members)")
  assert all(row[empty_column] == runner.EMPTY for row in segment_table["rows"])
  text = runner.format_table(results)
  assert "±" not in text and "0.7200" in text and "n=5 (3 members)" in text


def test_format_table_of_nothing_is_empty():
  assert runner.format_table({}) == ""


def test_gain_cells_show_the_interval_or_why_there_is_none():
  assert runner.format_gain({"gain": 0.003, "lower": -0.001, "upper": 0.007, "members": 9}) == \
      "+0.0030 [-0.0010, +0.0070]"
  assert runner.format_gain({"gain": -0.01, "lower": _NAN, "upper": _NAN, "members": 1}) == \
      "-0.0100 (1 member: no interval)"
  assert runner.format_gain({"gain": _NAN, "lower": _NAN, "upper": _NAN, "members": 0}) == \
      runner.EMPTY
  assert runner.format_gain(None) == runner.EMPTY
  # As read back from results.json, where NaN is written as null.
  assert runner.format_gain({"gain": 0.01, "lower": None, "upper": None, "members": 1}) == \
      "+0.0100 (1 member: no interval)"
  assert runner.format_gain({"gain": None, "lower": None, "upper": None, "members": 0}) == \
      runner.EMPTY
