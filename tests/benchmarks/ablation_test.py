"""`benchmarks/ablation.py`: variant names, and a run on a user's CSV (the validation split only)."""

import pytest

from limaml_keras import metrics
from limaml_keras import schema
from limaml_keras import synthetic
from limaml_keras.evaluation import tuned

from tests.benchmarks import scripts

ablation = scripts.load("ablation")


def test_a_variant_stacks_its_changes_on_the_tuned_settings():
  settings = tuned.hyperparameters("movielens-100k")
  method, train_hp, eval_hp = ablation.parse_variant("limaml+noitems+steps1", settings)
  assert method == "limaml"
  assert (train_hp.support_items, train_hp.inner_steps) == ("none", 1)
  assert (eval_hp.support_items, eval_hp.inner_steps) == ("none", 1)
  assert train_hp.epochs == settings["limaml"].epochs
  # fine_tune trains as the global model: its changes reach that model's settings.
  method, train_hp, _ = ablation.parse_variant("fine_tune+e3", settings)
  assert (method, train_hp.epochs) == ("fine_tune", 3)


def test_an_at_suffix_changes_only_the_evaluation_inner_steps():
  settings = tuned.hyperparameters("movielens-100k")
  _, train_hp, eval_hp = ablation.parse_variant("limaml+pc20@1", settings)
  _, base_train_hp, _ = ablation.parse_variant("limaml+pc20", settings)
  assert train_hp == base_train_hp  # one trained model for both
  assert (train_hp.inner_steps, eval_hp.inner_steps) == (settings["limaml"].inner_steps, 1)
  assert eval_hp.inner_pseudo_count == 20.0


@pytest.mark.parametrize("variant, message", [("bogus", "unknown method 'bogus'"),
                                              ("limaml+bogus", "unknown changes ['bogus']"),
                                              ("global@1", "'@K' takes a whole number K"),
                                              ("limaml@x", "'@K' takes a whole number K"),
                                              ("limaml@", "'@K' takes a whole number K")])
def test_bad_variants_are_named(variant, message):
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
    ablation.parse_variant(variant, tuned.hyperparameters("movielens-100k"))


def test_csv_needs_its_spec(tmp_path, capsys):
  with pytest.raises(SystemExit):
    ablation.main(["--csv", str(tmp_path / "x.csv")])
  assert "--csv needs --spec" in capsys.readouterr().err


def test_held_out_members_are_a_member_protocol_variant(capsys):
  with pytest.raises(SystemExit):
    ablation.main(["--dataset", "synthetic", "--protocol", "time", "--held-out", "0.2"])
  assert "--held-out is a variant of --protocol member" in capsys.readouterr().err


@pytest.mark.slow  # trains a model
def test_the_time_protocol_validation_split_scores_new_members_as_cold_start(tmp_path):
  data = synthetic.generate(num_members=60, num_items=20, seed=2)
  path = str(tmp_path / "interactions.csv")
  data.interactions.to_csv(path, index=False)
  schema.save_spec(data.spec, str(tmp_path / "features.json"))
  record = ablation.main(["--csv", path, "--spec", str(tmp_path / "features.json"),
                          "--settings-from", "synthetic", "--protocol", "time",
                          "--variants", "global", "--seeds", "0", "--epochs", "1",
                          "--few-shot", "0"])
  assert record["protocol"] == "time (validation split inside the training data)"
  # Inside the training period only: 80 % of 80 % of the interactions train, by time.
  assert record["training_interactions"] < 0.7 * len(data.interactions)
  entry = record["variants"]["global"]["all"]
  assert {f"gauc_{segment}" for segment in metrics.SEGMENTS} <= set(entry)
  assert 0.0 <= entry["gauc"]["mean"] <= 1.0
  # Members first seen after the inner cutoff are scored, as the cold-start segment.
  assert 0.0 <= entry["gauc_0"]["mean"] <= 1.0


@pytest.mark.slow  # trains a model
def test_a_user_csv_without_member_features_runs(tmp_path):
  data = synthetic.generate(num_members=40, num_items=20, seed=1)
  path = str(tmp_path / "interactions.csv")
  data.interactions[list(schema.KEY_COLUMNS)].to_csv(path, index=False)
  schema.save_spec(schema.FeatureSpec(), str(tmp_path / "features.json"))
  record = ablation.main(["--csv", path, "--spec", str(tmp_path / "features.json"),
                          "--variants", "limaml+noitems", "limaml+noitems@0",
                          "--seeds", "0", "--epochs", "1", "--few-shot", "0", "2"])
  # No --settings-from: a user's CSV gets the settings tuned on real data.
  assert (record["dataset"], record["settings_from"]) == (path, tuned.FOR_NEW_DATA)
  assert 0 < record["scored_members"] <= 40
  entry = record["variants"]["limaml+noitems"]
  assert set(entry) >= {"all", "0", "2", "hyperparameters", "seconds"}
  assert 0.0 <= entry["all"]["gauc"]["mean"] <= 1.0
  # `@0` scores the same trained model without inner steps: with no support the two agree,
  # with support the gradient steps change the scores.
  no_steps = record["variants"]["limaml+noitems@0"]
  assert (entry["evaluation_inner_steps"], no_steps["evaluation_inner_steps"]) == (
      tuned.hyperparameters(tuned.FOR_NEW_DATA)["limaml"].inner_steps, 0)
  assert no_steps["0"]["log_loss"]["values"] == entry["0"]["log_loss"]["values"]
  assert no_steps["all"]["log_loss"]["values"] != entry["all"]["log_loss"]["values"]
  assert len(entry["all"]["gauc"]["values"]) == 1
  assert {f"gauc_{segment}" for segment in metrics.SEGMENTS} <= set(entry["all"])
  assert entry["hyperparameters"]["support_items"] == "none"
  assert entry["hyperparameters"]["task_history"] == 50  # the MovieLens recipe underneath
