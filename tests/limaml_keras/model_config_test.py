"""Tests of the one model config (TF-free)."""

import dataclasses
import subprocess
import sys

import pytest

from limaml_keras import model_config
from limaml_keras.evaluation import method_names


def test_dict_round_trip():
  config = model_config.ModelConfig(epochs=3, meta_hidden=(8, 4))
  assert model_config.ModelConfig.from_dict(config.to_dict()) == config
  assert config.to_dict()["meta_hidden"] == [8, 4]


@pytest.mark.parametrize("value, message", [
    ({"epoch": 3}, r"unknown model config keys \['epoch'\]"),
    ({"model": "mf"}, "model must be one of"),
    ({"batch_size": 0}, "batch_size must be >= 1"),
    ({"epochs": 1.5}, "epochs must be >= 1"),
    ({"inner_steps": -1}, "inner_steps must be >= 0"),
    ({"ranking_loss_weight": -1.0}, "ranking_loss_weight must be a finite number >= 0"),
    ({"inner_ranking_loss_weight": float("inf")}, "inner_ranking_loss_weight must be a finite"),
    ({"ranking_loss_weight": "0.5"}, "ranking_loss_weight must be a finite"),
    ({"inner_pseudo_count": -2}, "inner_pseudo_count must be a finite number >= 0"),
    ({"meta_in_tower": False}, "meta_in_tower=False needs meta_item_interaction=True"),
    ({"meta_offset": True, "embedding_dim": 1}, "meta_offset needs embedding_dim >= 2, got 1"),
    ({"bilinear_evidence": True}, "bilinear_evidence=True needs meta_item_interaction=True"),
    ({"bilinear_evidence": 1, "meta_item_interaction": True}, "bilinear_evidence must be True or"),
    ({"evidence_in_tower": 1}, "evidence_in_tower must be True or False"),
    ({"adapt_offset_only": True}, "adapt_offset_only=True needs meta_offset=True"),
    ({"adapt_offset_only": "yes", "meta_offset": True}, "adapt_offset_only must be True or False"),
    ({"evidence_in_tower": True, "meta_item_interaction": True},
     "evidence_in_tower=True needs bilinear_evidence=True"),
    ({"member_id_dropout": 1.0}, r"member_id_dropout must be in \[0, 1\)"),
    ({"member_id_dropout": -0.1}, "member_id_dropout must be in"),
    ({"member_id_dropout": True}, "member_id_dropout must be in"),
    ({"unadapted_loss_weight": -0.5}, "unadapted_loss_weight must be a finite number >= 0"),
    ({"new_member_loss_weight": -0.5}, "new_member_loss_weight must be a finite number >= 0"),
    ({"ema_momentum": 1.0}, r"ema_momentum must be in \[0, 1\)"),
    ({"support_gate_count": 0}, "support_gate_count must be a finite number > 0"),
    ({"support_gate_count": True}, "support_gate_count must be a finite number > 0"),
    ({"ema_momentum": "0.99"}, "ema_momentum must be in"),
])
def test_bad_config_is_rejected(value, message):
  with pytest.raises(ValueError, match=message):
    model_config.ModelConfig.from_dict(value)


def test_baseline_is_the_global_model_without_meta_learning_extras():
  baseline = model_config.ModelConfig(use_history=True, learn_inner_lr=True).baseline()
  assert (baseline.model, baseline.use_history, baseline.learn_inner_lr) == (
      model_config.GLOBAL, False, False)


def test_every_trained_model_kind_is_a_config_model():
  # The evaluation's model kinds map onto `ModelConfig.model` (+ first_order).
  kinds = set(method_names.TRAINED_AS.values())
  assert {k.replace("_first_order", "") for k in kinds} == set(model_config.MODELS)


def test_import_does_not_load_tensorflow():
  code = ("import sys; import limaml_keras.model_config, limaml_keras.task_settings; "
          "print('tensorflow' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"


def test_fields_are_plain_values():
  for field in dataclasses.fields(model_config.ModelConfig):
    assert field.default is not dataclasses.MISSING, field.name
