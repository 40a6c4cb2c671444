"""Tuned settings: known names give them, unknown names are an error, never a silent default."""

import pytest

from limaml_keras.evaluation import methods, tuned


def test_known_dataset_gets_its_overrides():
  settings = tuned.hyperparameters("movielens-100k")
  assert set(settings) == set(methods.METHODS)
  for method, overrides in tuned.TUNED["movielens-100k"].items():
    for name, value in overrides.items():
      assert getattr(settings[method], name) == value


def test_unknown_dataset_is_an_error():
  with pytest.raises(ValueError, match="no tuned settings for 'my-data'"):
    tuned.hyperparameters("my-data")


def test_untuned_is_the_defaults():
  assert all(hp == methods.Hyperparameters() for hp in tuned.untuned().values())


def test_settings_for_a_dataset_its_own_else_the_real_data_recipe():
  assert tuned.settings_for("synthetic") == (tuned.hyperparameters("synthetic"), "synthetic")
  for name in ("my-data", None):
    assert tuned.settings_for(name) == (tuned.hyperparameters(tuned.FOR_NEW_DATA),
                                        tuned.FOR_NEW_DATA)
  assert tuned.settings_for("synthetic", "movielens-100k") == (
      tuned.hyperparameters("movielens-100k"), "movielens-100k")
  assert tuned.settings_for("my-data", tuned.LIBRARY_DEFAULTS) == (tuned.untuned(), "defaults")
  with pytest.raises(ValueError, match=r"no tuned settings for 'typo'.*'defaults'"):
    tuned.settings_for("my-data", "typo")


def test_new_data_gets_a_recipe_that_personalises():
  # What both tuned datasets chose (docs/results/ablation/README.md); the library defaults fall
  # below global at small support on the synthetic data read as a user's CSV (session 21).
  limaml = tuned.settings_for(None)[0]["limaml"]
  assert tuned.FOR_NEW_DATA in tuned.TUNED
  assert limaml.task_history > 0 and limaml.member_id_embedding and limaml.meta_item_interaction
  assert limaml.support_items == "shared" and limaml.meta_offset


@pytest.mark.parametrize("dataset", sorted(tuned.TUNED))
def test_every_method_trains_with_the_weight_average(dataset):
  # Ablation round 9: the EMA of the weights helped every model kind on both datasets.
  assert all(hp.ema_momentum == 0.99 for hp in tuned.hyperparameters(dataset).values())


@pytest.mark.parametrize("dataset", sorted(tuned.TUNED))
def test_the_member_level_offset_is_chosen_per_method(dataset):
  # Ablation rounds 12 and 13: LiMAML and the global model (fine-tuning reuses its model) gained
  # from the offset on both datasets' validation splits; the ID model did not.
  settings = tuned.hyperparameters(dataset)
  assert settings["limaml"].meta_offset and settings["global"].meta_offset
  assert not settings["id_embedding"].meta_offset
  assert methods.TRAINED_AS["fine_tune"] == "global"
