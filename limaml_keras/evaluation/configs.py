"""Hyper-parameters per dataset and method, chosen by `limaml evaluate --tune`.

Tuning applies the evaluation protocol *inside* the training period
(`protocol.validation_split`) and never looks at the query period. The values
below are what that search picked; rerun it with `limaml evaluate --tune`.
"""

from typing import Dict

from limaml_keras.evaluation.methods import METHODS, Hyperparameters

_BASE = Hyperparameters()

TUNED: Dict[str, Dict[str, dict]] = {
    "synthetic": {},
    "movielens-100k": {},
}


def hyperparameters(dataset: str) -> Dict[str, Hyperparameters]:
  """The tuned `Hyperparameters` of every method on `dataset` (defaults where untuned)."""
  overrides = TUNED.get(dataset, {})
  return {m: _BASE.replace(**overrides.get(m, {})) for m in METHODS}
