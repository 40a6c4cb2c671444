"""`configs`: the pipeline's constants point at real code, and local Beam is chosen by data size."""

import importlib

from tfx_pipeline.pipeline import configs


def test_the_user_functions_resolve_to_callables():
  for path in (configs.PREPROCESSING_FN, configs.RUN_FN):
    module, name = path.rsplit(".", 1)
    assert callable(getattr(importlib.import_module(module), name)), path


def test_small_data_runs_beam_in_memory_and_large_data_over_workers():
  limit = configs.IN_MEMORY_MAX_INTERACTIONS
  assert configs.local_beam_pipeline_args(0) == configs.IN_MEMORY_BEAM_PIPELINE_ARGS
  assert configs.local_beam_pipeline_args(limit) == configs.IN_MEMORY_BEAM_PIPELINE_ARGS
  assert configs.local_beam_pipeline_args(limit + 1) == \
      configs.MULTI_PROCESSING_BEAM_PIPELINE_ARGS


def test_the_gate_is_a_gain_over_the_baseline_with_a_small_log_loss_tolerance():
  assert 0.5 <= configs.MIN_AUC < 1.0
  assert configs.MIN_GAUC_GAIN >= 0.0  # never bless a model that ranks worse within members
  assert 0.0 <= configs.MAX_LOG_LOSS_INCREASE <= 0.05
