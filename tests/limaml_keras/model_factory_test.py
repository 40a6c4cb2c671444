"""Tests of the one model factory (used by the TFX Trainer and the evaluation)."""

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import model as model_lib
from limaml_keras import model_config
from limaml_keras import model_factory
from limaml_keras import task_settings
from limaml_keras import testing


@pytest.mark.parametrize("config, expected", [
    (model_config.ModelConfig(), model_lib.LiMAMLModel),
    (model_config.ModelConfig().baseline(), model_lib.GlobalModel),
    (model_config.ModelConfig(model=model_config.ID_EMBEDDING), model_lib.IdEmbeddingModel),
])
def test_build_model(config, expected):
  model = model_factory.build_model(config, num_items=5, num_members=7)
  assert type(model) is expected  # pylint: disable=unidiomatic-typecheck
  assert model.use_history == config.use_history
  assert model.meta_block.embedding_dim == config.embedding_dim


def test_first_order_flag():
  model = model_factory.build_model(model_config.ModelConfig(first_order=True), 5, 7)
  assert model.first_order
  assert model.inner_steps == model_config.ModelConfig().inner_steps


@pytest.mark.parametrize("model", model_config.MODELS)
def test_loss_options_reach_every_model_kind(model):
  config = model_config.ModelConfig(model=model, ranking_loss_weight=0.3,
                                    inner_ranking_loss_weight=0.2, inner_pseudo_count=4.0)
  built = model_factory.build_model(config, num_items=5, num_members=7)
  assert (built.ranking_loss_weight, built.inner_ranking_loss_weight,
          built.inner_pseudo_count) == (0.3, 0.2, 4.0)


def test_support_gate_settings_reach_limaml():
  config = model_config.ModelConfig(use_history=True, support_gate=True, support_gate_count=4.0)
  built = model_factory.build_model(config, num_items=5, num_members=7)
  assert (built.support_gate, built.support_gate_count) == (True, 4.0)


@pytest.mark.parametrize("model", model_config.MODELS)
def test_meta_offset_reaches_every_global_block(model):
  config = model_config.ModelConfig(model=model, meta_offset=True)
  built = model_factory.build_model(config, num_items=5, num_members=7)
  assert built.global_block.get_config()["meta_offset"] is True


@pytest.mark.parametrize("model", model_config.MODELS)
def test_bilinear_evidence_reaches_every_model(model):
  config = model_config.ModelConfig(model=model, meta_item_interaction=True,
                                    bilinear_evidence=True)
  built = model_factory.build_model(config, num_items=5, num_members=7)
  assert built.bilinear_evidence is True
  assert model_factory.build_model(config.replace(bilinear_evidence=False), num_items=5,
                                   num_members=7).bilinear_evidence is False
  assert built.global_block.get_config()["evidence_in_tower"] is False
  in_tower = model_factory.build_model(config.replace(evidence_in_tower=True), num_items=5,
                                       num_members=7)
  assert in_tower.global_block.get_config()["evidence_in_tower"] is True


@pytest.mark.parametrize("model", [model_config.ID_EMBEDDING, model_config.LIMAML])
def test_member_id_dropout_reaches_the_models_with_member_ids(model):
  config = model_config.ModelConfig(model=model, member_id_embedding=True, member_id_dropout=0.2)
  assert model_factory.build_model(config, num_items=5, num_members=7).member_id_dropout == 0.2


@pytest.mark.parametrize("name", ["unadapted_loss_weight", "new_member_loss_weight"])
def test_outer_loss_weights_reach_limaml(name):
  config = model_config.ModelConfig(**{name: 0.3})
  assert getattr(model_factory.build_model(config, num_items=5, num_members=7), name) == 0.3


def test_offset_only_adaptation_reaches_limaml():
  config = model_config.ModelConfig(meta_offset=True, adapt_offset_only=True)
  assert model_factory.build_model(config, num_items=5, num_members=7).adapt_offset_only is True
  assert model_factory.build_model(config.replace(adapt_offset_only=False), num_items=5,
                                   num_members=7).adapt_offset_only is False


@pytest.mark.parametrize("sizes, tasks, cap", [
    ((), task_settings.DEFAULTS, 20),                            # window tasks: half of 40
    ((), task_settings.DEFAULTS.replace(task_history=50), 50),    # history tasks
    ((0, 1, 5), task_settings.DEFAULTS.replace(task_history=50), 5),  # sampled sizes below it
    ((0, 100), task_settings.DEFAULTS.replace(task_history=50), 50),  # ... or above it
    ((0,), task_settings.DEFAULTS, 1),                            # zero-support training only
])
def test_limaml_count_cap_is_the_largest_support_of_meta_training(sizes, tasks, cap):
  config = model_config.ModelConfig(train_support_sizes=sizes)
  assert model_factory.build_model(config, 5, 7, tasks).support_count_cap == cap
  assert model_factory.build_model(config.baseline(), 5, 7, tasks).support_count_cap is None


@pytest.mark.parametrize("inner_steps", [1, 0])  # 0: the learned inner lr never gets a gradient
def test_ema_training_ends_with_the_moving_average_of_the_weights(inner_steps):
  config = model_config.ModelConfig(ema_momentum=0.9, inner_steps=inner_steps, learn_inner_lr=True)
  model = model_factory.build_model(config, num_items=10, num_members=7)
  assert model.optimizer.use_ema and model.optimizer.ema_momentum == 0.9
  batches = [testing.random_task_batch(seed=s) for s in range(6)]
  dataset = tf.data.Dataset.from_tensor_slices(
      {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}).batch(4)
  model.fit(dataset, epochs=1, verbose=0)
  averages = model.optimizer._model_variables_moving_average  # pylint: disable=protected-access
  for variable in model.trainable_variables:
    average = averages[model.optimizer._index_dict[model.optimizer._var_key(variable)]]  # pylint: disable=protected-access
    np.testing.assert_allclose(variable.numpy(), average.numpy())
  plain = model_factory.build_model(config.replace(ema_momentum=0.0), num_items=10, num_members=7)
  assert not plain.optimizer.use_ema
