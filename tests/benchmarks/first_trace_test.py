"""`benchmarks/first_trace.py`: first-step timings of each model kind, and the mode switch."""

import json

import pytest
from tensorflow.python.autograph.core import config  # pylint: disable=g-direct-tensorflow-import

from limaml_keras import autograph_rules

from tests.benchmarks import scripts

first_trace = scripts.load("first_trace")


def test_convert_mode_takes_out_only_the_package_rules():
  assert autograph_rules.skips_tf_keras()
  rules = first_trace.without_tf_keras_rules(config.CONVERSION_RULES)
  assert rules == tuple(config.CONVERSION_RULES[len(autograph_rules.RULES):])
  assert any(r.matches("keras") for r in rules)  # TensorFlow's own rules stay.


@pytest.mark.slow  # trains a model
def test_child_prints_the_timings_of_each_model(capsys):
  first_trace.main(["--child", "skip", "--models", "global"])
  record = json.loads(capsys.readouterr().out)
  assert list(record) == ["global"]
  timings = record["global"]
  assert set(timings) == {"first_step_s", "second_step_s", "first_score_s", "loss"}
  assert all(timings[k] > 0 for k in ("first_step_s", "second_step_s", "first_score_s"))
  assert 0 < timings["loss"] < 5


def test_unknown_model_is_named(capsys):
  with pytest.raises(SystemExit):
    first_trace.main(["--models", "global,bogus"])
  assert "--models: unknown ['bogus']" in capsys.readouterr().err
