"""The evaluation end to end on small data: every method runs, results.json has the schema, the report builds."""

import json

import numpy as np
import pytest

from limaml import cli
from limaml_keras import metrics
from limaml_keras import synthetic
from limaml_keras.evaluation import datasets, experiment, methods, protocol, report, runner
from limaml_keras.evaluation import tuned

_FEW_SHOT = (0, 2)  # two points of the curve keep the test short


@pytest.fixture(scope="module")
def small_split():
  data = synthetic.generate(num_members=150, num_items=60, seed=5)
  return protocol.time_split(data.interactions, data.spec)


@pytest.fixture(scope="module")
def results(small_split):
  hp = methods.Hyperparameters(epochs=1, meta_hidden=(8,), global_hidden=(8,), embedding_dim=4)
  return runner.run_methods(small_split, {m: hp for m in methods.METHODS}, seeds=[0, 1],
                            few_shot_sizes=_FEW_SHOT)


@pytest.mark.slow  # trains models
def test_every_method_reports_every_segment_for_every_seed(results):
  assert list(results) == list(methods.METHODS)
  for entry in results.values():
    assert len(entry["auc"]) == len(entry["gauc"]) == 2
    assert all(0.0 <= v <= 1.0 for v in entry["auc"])
    assert set(entry["segments"]) == set(metrics.SEGMENTS)
    assert sum(s["members"] for s in entry["segments"].values()) > 0
    assert all(len(curve) == 1 for curve in entry["training_loss"])


@pytest.mark.slow  # trains models
def test_global_and_fine_tune_share_the_model_but_not_the_scores(results):
  assert results["global"]["training_loss"] == results["fine_tune"]["training_loss"]
  assert results["global"]["auc"] != results["fine_tune"]["auc"]


@pytest.mark.slow  # trains models
def test_results_json_and_report_build(tmp_path, results, small_split):
  record = {"dataset": "synthetic", "seeds": [0, 1], "results": results,
            "protocol": {"cutoff": small_split.cutoff}}
  path = report.write_results(record, str(tmp_path))
  loaded = json.load(open(path, encoding="utf-8"))
  assert loaded["dataset"] == "synthetic" and loaded["seeds"] == [0, 1]
  for method in methods.METHODS:
    entry = loaded["results"][method]
    assert len(entry["auc"]) == 2
    assert set(entry["segments"]) == {"0", "1-5", "6-20", ">20"}
    assert isinstance(entry["segments"]["1-5"]["members"], int)
  page = open(report.write_html(record, str(tmp_path)), encoding="utf-8").read()
  assert page.count("<img") == 4 and "data:image/png;base64," in page
  assert "limaml_first_order" in page


@pytest.mark.slow  # trains models
def test_every_method_has_the_few_shot_curve_and_calibration(results):
  for entry in results.values():
    assert set(entry["few_shot"]) == {str(n) for n in _FEW_SHOT}
    for record in [entry, *entry["segments"].values(), *entry["few_shot"].values()]:
      assert len(record["log_loss"]) == len(record["ece"]) == 2
  # Without adaptation the global model's scores do not depend on n; with it, fine-tuning's do.
  assert len({tuple(v["auc"]) for v in results["global"]["few_shot"].values()}) == 1
  assert len({tuple(v["auc"]) for v in results["fine_tune"]["few_shot"].values()}) > 1


@pytest.mark.slow  # trains models
def test_every_method_has_paired_gains_over_every_earlier_method(results):
  assert "gauc_gain" not in results["global"]
  gains = results["limaml"]["gauc_gain"]
  assert list(gains) == list(methods.METHODS[:-1])
  over_global = gains["global"]["overall"]
  assert over_global["seeds"] == 2
  # Seed-averaged member differences: the gain is the mean of the two seeds' gAUC differences.
  expected = np.mean(results["limaml"]["gauc"]) - np.mean(results["global"]["gauc"])
  assert over_global["gain"] == pytest.approx(expected, abs=1e-9)
  assert over_global["lower"] <= over_global["gain"] <= over_global["upper"]
  assert set(gains["global"]["segments"]) == set(metrics.SEGMENTS)
  assert set(gains["global"]["few_shot"]) == {str(n) for n in _FEW_SHOT}
  # fine_tune without support (n = 0) is the global model: a gain of exactly 0.
  no_support = results["fine_tune"]["gauc_gain"]["global"]["few_shot"]["0"]
  assert no_support["gain"] == no_support["lower"] == no_support["upper"] == 0.0
  tables = runner.format_table(results)
  assert "gAUC gain by member-activity segment" in tables and "limaml − global" in tables


@pytest.mark.slow  # trains models
def test_table_has_one_row_per_method(results):
  title, table = runner.format_table(results).split("\n\n")[:2]
  assert title == "**Overall**"
  assert table.count("\n") == len(methods.METHODS) + 1
  assert "±" in table


def test_movielens_without_data_dir_is_a_clear_error(capsys):
  assert cli.main(["evaluate", "--dataset", "movielens-100k", "--output", "/tmp/x"]) == 1
  assert "--data-dir is required" in capsys.readouterr().err


def test_unknown_dataset_is_named():
  with pytest.raises(ValueError, match="unknown dataset"):
    datasets.load("netflix")


def test_unknown_method_is_named(small_split):
  with pytest.raises(ValueError, match="unknown methods"):
    runner.run_methods(small_split, {}, seeds=[0], methods=["magic"])


@pytest.fixture(scope="module")
def small_frame():
  data = synthetic.generate(num_members=150, num_items=60, seed=5)
  return data.interactions, data.spec


def test_held_out_protocol_scores_only_held_out_members(small_frame):
  frame, spec = small_frame
  split, scored = experiment.make_split(frame, spec, "member-heldout")
  held_out = set(split.held_out_members)
  assert held_out and set(np.asarray(scored.member_ids).astype(str)) == held_out
  assert not held_out & set(np.asarray(split.train["member_key"]).astype(str))
  record = experiment.protocol_record("member-heldout", split, scored,
                                      max_support=protocol.DEFAULT_MAX_SUPPORT)
  assert record["scored_members"] == len(held_out) == record["held_out_members"]
  assert record["cutoff_date"] is None


@pytest.mark.parametrize("name", ["time", "member", "member-heldout"])
@pytest.mark.parametrize("validation", [False, True])
def test_the_support_cap_reaches_every_protocol(small_frame, name, validation):
  frame, spec = small_frame
  capped = {cap: experiment.make_split(frame, spec, name, validation=validation,
                                       max_support=cap)[1] for cap in (3, 1000)}
  assert capped[3].support_sizes.max() == 3 < capped[1000].support_sizes.max()
  np.testing.assert_array_equal(capped[3].support_sizes,
                                np.minimum(capped[1000].support_sizes, 3))
  split, scored = experiment.make_split(frame, spec, name, max_support=3)
  assert experiment.protocol_record(name, split, scored, 3)["max_support"] == 3


@pytest.mark.parametrize("name", ["time", "member", "member-heldout"])
def test_baselines_train_on_every_training_interaction(small_frame, name):
  frame, spec = small_frame
  split, _ = experiment.make_split(frame, spec, name)
  tasks = methods.training_tasks(methods.Hyperparameters(), split.train)
  assert tasks.support_sizes.sum() + tasks.query_sizes.sum() == len(split.train["label"])


def test_cutoff_is_printed_as_a_date():
  assert experiment.cutoff_date(889237269) == "1998-03-07 02:21:09 UTC"


def test_unknown_protocol_is_named(small_frame):
  with pytest.raises(ValueError, match="unknown protocol"):
    experiment.make_split(*small_frame, "random")


def test_unknown_settings_print_a_note():
  notes = []
  chosen = experiment.choose_hyperparameters("my-data", notes.append)
  assert chosen == tuned.hyperparameters(tuned.FOR_NEW_DATA)
  assert len(notes) == 1 and "no tuned settings for 'my-data'" in notes[0]
  assert f"uses the settings tuned on {tuned.FOR_NEW_DATA}" in notes[0]
  assert experiment.choose_hyperparameters("my-data", notes.append, "synthetic") == (
      tuned.hyperparameters("synthetic"))
  assert experiment.choose_hyperparameters("my-data", notes.append, "defaults") == (
      tuned.untuned())
  assert experiment.choose_hyperparameters("synthetic", notes.append) == (
      tuned.hyperparameters("synthetic"))
  assert len(notes) == 1  # A name that was asked for, or tuned, needs no note.
  with pytest.raises(ValueError, match="no tuned settings for 'typo'"):
    experiment.choose_hyperparameters("my-data", notes.append, "typo")


def test_overrides_change_one_method_and_parse_literals():
  base = tuned.untuned()
  chosen = experiment.apply_overrides(base, [
      "limaml.support_items=shared", "limaml.meta_item_interaction=true",
      "limaml.task_history=50", "limaml.train_support_sizes=0,1,5", "limaml.max_inner_lr=0.5"])
  hp = chosen["limaml"]
  assert (hp.support_items, hp.meta_item_interaction, hp.task_history) == ("shared", True, 50)
  assert hp.train_support_sizes == (0, 1, 5) and hp.max_inner_lr == 0.5
  assert chosen["global"] == base["global"]


@pytest.mark.parametrize("bad, message", [("limaml.epochs", "METHOD.FIELD=VALUE"),
                                          ("magic.epochs=1", "unknown method"),
                                          ("limaml.speed=1", "unknown field")])
def test_bad_override_is_named(bad, message):
  with pytest.raises(ValueError, match=message):
    experiment.apply_overrides(tuned.untuned(), [bad])
