"""`methods.build_model` wires every Hyperparameters option into the model it builds."""

import numpy as np
import pytest

from limaml_keras import synthetic
from limaml_keras.evaluation import methods as M
from limaml_keras.evaluation import protocol
from limaml_keras.model import GlobalModel, IdEmbeddingModel, LiMAMLModel


def test_limaml_options_reach_the_model():
  hp = M.Hyperparameters(meta_item_interaction=True, support_items="shared",
                         train_support_sizes=(0, 2), max_inner_lr=0.5, member_id_embedding=True,
                         learn_inner_lr=True)
  model = M.build_model("limaml", hp, num_items=20, num_members=7)
  assert isinstance(model, LiMAMLModel)
  assert model.global_block.get_config()["meta_item_interaction"]
  assert model.support_items == "shared" and model.train_support_sizes == [0, 2]
  assert model.max_inner_lr == 0.5 and model.num_members == 7


def test_each_method_adapts_at_evaluation_as_its_settings_say():
  hp = M.Hyperparameters(inner_steps=3, fine_tune_steps=5, fine_tune_lr=0.2)
  assert [m for m in M.METHODS if M.adapts_with_maml(m)] == ["limaml_first_order", "limaml"]
  limaml = M.build_model("limaml", hp, num_items=20, num_members=7)
  M.configure_for("limaml", limaml, hp.replace(inner_steps=1))  # other steps than training
  assert limaml.inner_steps == 1
  M.configure_for("limaml", limaml, hp)
  assert limaml.inner_steps == 3
  global_model = M.build_model("global", hp, num_items=20, num_members=7)
  M.configure_for("fine_tune", global_model, hp)
  assert (global_model.inner_steps, global_model.inner_lr) == (5, 0.2)
  M.configure_for("global", global_model, hp)  # the same model, scored without adapting
  assert global_model.inner_steps == 0
  id_model = M.build_model("id_embedding", hp, num_items=20, num_members=7)
  M.configure_for("id_embedding", id_model, hp)
  assert id_model.inner_steps == 0  # the ID model never adapts


@pytest.mark.parametrize("kind,cls", [("global", GlobalModel), ("id_embedding", IdEmbeddingModel)])
def test_baselines_keep_their_definitions_on_the_same_global_block(kind, cls):
  hp = M.Hyperparameters(meta_item_interaction=True, support_items="shared",
                         member_id_embedding=True, task_history=10)
  model = M.build_model(kind, hp, num_items=20, num_members=7)
  assert type(model) is cls
  assert model.global_block.get_config()["meta_item_interaction"]
  assert model.support_items == "none" and model.inner_steps == 0
  assert model.num_members == (7 if kind == "id_embedding" else 0)


@pytest.mark.parametrize("kind", ["global", "id_embedding", "limaml"])
def test_every_model_trains_on_its_own_task_settings(kind):
  data = synthetic.generate(num_members=60, num_items=30, seed=2)
  split = protocol.member_split(data.interactions, data.spec)
  plain_hp = M.Hyperparameters(window=10)
  history_hp = plain_hp.replace(task_history=5)
  plain = M.training_tasks(plain_hp, split.train)
  history = M.training_tasks(history_hp, split.train)
  assert plain.support_sizes.sum() + plain.query_sizes.sum() == len(split.train["label"])
  assert history.query_sizes.sum() == len(split.train["label"])
  assert history.support_sizes.max() == 5 and np.any(history.support_sizes == 0)
  # Plain models fit the query side of history tasks only: every interaction once.
  fits_support = lambda hp: getattr(M.build_model(kind, hp, num_items=30, num_members=61),
                                    "fit_support", None)
  if kind == "limaml":
    assert fits_support(history_hp) is None  # MAML's targets are always the query side.
  else:
    assert fits_support(plain_hp) is True and fits_support(history_hp) is False


def test_hyperparameters_split_into_model_config_and_task_settings():
  hp = M.Hyperparameters(epochs=7, support_items="shared", window=12, task_history=4)
  config = hp.model_config()
  assert type(config) is M.ModelConfig and (config.epochs, config.support_items) == (7, "shared")
  assert hp.training_task_settings() == M.task_settings.DEFAULTS.replace(window=12, task_history=4)
