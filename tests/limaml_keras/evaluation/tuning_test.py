"""`tuning`: the coordinate search on a validation split, its objective and what it stores."""

import math

import pytest

from limaml_keras import synthetic
from limaml_keras.evaluation import methods, protocol, tuning

_TINY = methods.Hyperparameters(epochs=1, meta_hidden=(8,), global_hidden=(8,), embedding_dim=4)


def test_objective_is_the_mean_of_auc_and_gauc():
  assert tuning.objective({"auc": 0.7, "gauc": 0.6}) == pytest.approx(0.65)
  # A split with no member that has both labels has no gAUC: AUC alone decides.
  assert tuning.objective({"auc": 0.7, "gauc": float("nan")}) == pytest.approx(0.7)


def test_changes_from_default_keeps_only_what_differs():
  hp = methods.Hyperparameters().replace(epochs=8, window=5)
  assert tuning.changes_from_default(hp) == {"epochs": 8, "window": 5}
  assert tuning.changes_from_default(methods.Hyperparameters()) == {}


def test_every_method_has_a_search_space_of_real_fields():
  fields = set(methods.Hyperparameters.__dataclass_fields__)
  assert set(tuning.SEARCH_SPACE) == set(methods.METHODS)
  for method, space in tuning.SEARCH_SPACE.items():
    for name, candidates in space:
      assert name in fields, (method, name)
      for value in candidates:  # every candidate is a valid setting
        methods.Hyperparameters().replace(**{name: value})


@pytest.fixture(scope="module")
def validation_split():
  data = synthetic.generate(num_members=150, num_items=60, seed=5)
  return protocol.validation_split(data.interactions, data.spec)


@pytest.mark.slow  # trains models
def test_search_keeps_the_best_candidate_and_trains_each_model_once(validation_split,
                                                                    monkeypatch):
  monkeypatch.setitem(tuning.SEARCH_SPACE, "global", (("epochs", (1, 2)),))
  monkeypatch.setitem(tuning.SEARCH_SPACE, "fine_tune", (("fine_tune_steps", (1, 2)),))
  trained = []
  train = methods.train

  def counting_train(kind, hp, *args, **kwargs):
    trained.append((kind, hp.epochs))
    return train(kind, hp, *args, **kwargs)

  monkeypatch.setattr(tuning.M, "train", counting_train)
  log = []
  chosen, trials = tuning.tune(validation_split, methods=["fine_tune", "global"],
                               start={m: _TINY for m in methods.METHODS}, log=log.append)
  # `global` is searched first; fine-tuning adapts the chosen global model: no new training.
  assert [t[0] for t in trials] == ["global", "global", "fine_tune", "fine_tune"]
  assert trained == [("global", 1), ("global", 2)]
  assert len(log) == 4 and all(line.startswith("tune ") for line in log)
  assert all(math.isfinite(score) for _, _, score in trials)
  for method, name in (("global", "epochs"), ("fine_tune", "fine_tune_steps")):
    scores = [(score, change[name]) for m, change, score in trials if m == method]
    best = max(score for score, _ in scores)
    # The first candidate within 1e-4 of the best wins (a later one must beat it by more).
    first_best = next(value for score, value in scores if score >= best - 1e-4)
    assert getattr(chosen[method], name) == first_best
  assert chosen["fine_tune"].epochs == chosen["global"].epochs
  # Methods not asked for keep their starting values.
  assert chosen["limaml"] == _TINY
