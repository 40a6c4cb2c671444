"""Tests of the Trainer hyperparameters and the models they build."""

import dataclasses

import pytest

from limaml_keras import model as model_lib
from limaml_keras.evaluation import methods
from tfx_pipeline.models import model_config
from tfx_pipeline.models import trainer


def test_dict_round_trip():
  config = model_config.ModelConfig(epochs=3, meta_hidden=(8, 4))
  assert model_config.ModelConfig.from_dict(config.to_dict()) == config
  assert config.to_dict()["meta_hidden"] == [8, 4]


@pytest.mark.parametrize("value, message", [
    ({"epoch": 3}, r"unknown model config keys \['epoch'\]"),
    ({"model": "mf"}, "model must be one of"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
])
def test_bad_config_is_rejected(value, message):
  with pytest.raises(ValueError, match=message):
    model_config.ModelConfig.from_dict(value)


def test_every_model_field_is_a_hyperparameter():
  names = {f.name for f in dataclasses.fields(methods.Hyperparameters)}
  own = {"model", "first_order", "seed"}
  assert {f.name for f in dataclasses.fields(model_config.ModelConfig)} - own <= names


@pytest.mark.parametrize("config, expected", [
    (model_config.ModelConfig(), model_lib.LiMAMLModel),
    (model_config.ModelConfig().baseline(), model_lib.GlobalModel),
])
def test_build_model(config, expected):
  model = trainer.build_model(config, num_items=5, num_members=7)
  assert type(model) is expected  # pylint: disable=unidiomatic-typecheck
  assert model.use_history == config.use_history
  assert model.meta_block.embedding_dim == config.embedding_dim


def test_first_order_flag():
  model = trainer.build_model(model_config.ModelConfig(first_order=True), 5, 7)
  assert model.first_order
