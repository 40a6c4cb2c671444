"""Honest hyper-parameter search: coordinate search on a validation split inside the training period."""

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from limaml_keras.evaluation import methods as M
from limaml_keras.evaluation.protocol import Split
from limaml_keras.evaluation.runner import metric_record

_MAML_SEARCH = (("use_history", (False, True)), ("epochs", (3, 5, 8)),
                ("inner_lr", (0.3, 0.5, 1.0)), ("inner_steps", (1, 3, 5)), ("window", (40, 80)),
                ("embedding_dim", (16, 32)), ("meta_hidden", ((32,), (64,))),
                ("learn_inner_lr", (False, True)))
#: Per method, the parameters searched one after another, and their candidates.
SEARCH_SPACE: Dict[str, Sequence[Tuple[str, Sequence]]] = {
    "global": (("epochs", (3, 5, 10, 20)), ("learning_rate", (1e-3, 3e-3))),
    "id_embedding": (("epochs", (3, 5, 10, 20)), ("id_l2", (0.0, 1e-4, 1e-3))),
    "fine_tune": (("fine_tune_steps", (1, 3, 5)), ("fine_tune_lr", (0.05, 0.2, 0.5, 1.0))),
    "limaml_first_order": _MAML_SEARCH,
    "limaml": _MAML_SEARCH,
}
_EVAL_ONLY_FIELDS = ("fine_tune_steps", "fine_tune_lr")


def objective(record: Mapping) -> float:
  """What tuning maximises: the mean of AUC and gAUC on the validation query period."""
  return float(np.nanmean([record["auc"], record["gauc"]]))


class _Trainer:
  """Trains each distinct (model kind, training hyper-parameters) once."""

  def __init__(self, split: Split, seed: int):
    self._split, self._seed = split, seed
    self._models, self._tasks = {}, {}

  def model(self, kind: str, hp: M.Hyperparameters):
    key = (kind, dataclasses.replace(hp, **{f: getattr(M.Hyperparameters(), f)
                                           for f in _EVAL_ONLY_FIELDS}))
    if key not in self._models:
      task_key = hp.training_task_settings()
      if task_key not in self._tasks:
        self._tasks[task_key] = M.training_tasks(hp, self._split.train)
      pre = self._split.preprocessor
      self._models[key] = M.train(kind, hp, self._tasks[task_key], pre.num_items,
                                  pre.num_members, self._seed)[0]
    return self._models[key]


def tune(split: Split,
         methods: Sequence[str] = M.METHODS,
         start: Optional[Mapping[str, M.Hyperparameters]] = None,
         seed: int = 0,
         log: Optional[Callable[[str], None]] = None) -> Tuple[Dict[str, M.Hyperparameters], List]:
  """Coordinate search per method; returns the chosen values and every trial.

  Args:
    split: a *validation* split (`protocol.validation_split`).
    methods: methods to tune; `fine_tune` is tuned on top of the chosen
      `global` model, so `global` is tuned first when both are asked for.
    start: starting hyper-parameters per method (default: `Hyperparameters()`).
    seed: model seed.
    log: progress callback.

  Returns:
    `(chosen, trials)`: chosen `Hyperparameters` per method, and a list of
    `(method, changes, record_objective)` for every evaluated candidate.
  """
  log = log or (lambda message: None)
  chosen = {m: (start or {}).get(m, M.Hyperparameters()) for m in M.METHODS}
  trainer = _Trainer(split, seed)
  trials = []
  for method in sorted(methods, key=M.METHODS.index):
    kind = M.TRAINED_AS[method]
    best, best_score = chosen[method], None
    if method == "fine_tune":
      best = chosen["global"].replace(fine_tune_steps=best.fine_tune_steps,
                                      fine_tune_lr=best.fine_tune_lr)
    for name, candidates in SEARCH_SPACE[method]:
      for value in candidates:
        hp = best.replace(**{name: value})
        model = trainer.model(kind, hp)
        M.configure_for(method, model, hp)
        score = objective(metric_record(M.score(model, split.evaluation)))
        trials.append((method, {name: value}, score))
        log(f"tune {method:<19} {name}={value!r:<8} objective {score:.4f}")
        if best_score is None or score > best_score + 1e-4:
          best_cand, best_score = hp, score
      best = best_cand
    chosen[method] = best
  return chosen, trials


def changes_from_default(hp: M.Hyperparameters) -> Dict:
  """The fields of `hp` that differ from `Hyperparameters()` (what `configs.TUNED` stores)."""
  default = M.Hyperparameters()
  return {f.name: getattr(hp, f.name) for f in dataclasses.fields(hp)
          if getattr(hp, f.name) != getattr(default, f.name)}
