"""The compared methods: one Meta Block + Global Block architecture, five ways to train and use it.

=====================  ==========================================================
method                 what it is
=====================  ==========================================================
`global`               plain training, no personalisation (cold-start embedding)
`id_embedding`         wide&deep: plain training plus a learnt member-ID vector
`fine_tune`            the `global` model, Meta Block fine-tuned per member on its
                       support set at serving time (no meta-learning)
`limaml_first_order`   first-order MAML
`limaml`               second-order MAML
=====================  ==========================================================
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from limaml_keras import model_config
from limaml_keras import model_factory
from limaml_keras import task_settings
from limaml_keras import tasks as tasks_lib
from limaml_keras import tensor_layout as F
from limaml_keras.evaluation.method_names import METHODS, TRAINED_AS
from limaml_keras.model import PersonalizedRanker
from limaml_keras.model_config import ModelConfig
from limaml_keras.tasks import Tasks

#: `TRAINED_AS` value -> (`ModelConfig.model`, `first_order`).
_MODEL_OF = {"global": (model_config.GLOBAL, False),
             "id_embedding": (model_config.ID_EMBEDDING, False),
             "limaml": (model_config.LIMAML, False),
             "limaml_first_order": (model_config.LIMAML, True)}


@dataclasses.dataclass(frozen=True)
class Hyperparameters(ModelConfig):
  """A `ModelConfig` plus the training-task choices the evaluation tunes.

  Attributes:
    window: interactions per training task (`TaskSettings.window`).
    task_history: train on history tasks with up to this many support
      interactions (`TaskSettings.task_history`; 0: split windows).
  """
  window: int = task_settings.DEFAULTS.window
  task_history: int = task_settings.DEFAULTS.task_history

  def training_task_settings(self) -> task_settings.TaskSettings:
    """The `TaskSettings` of this method's training tasks."""
    return task_settings.DEFAULTS.replace(window=self.window, task_history=self.task_history)

  def model_config(self) -> ModelConfig:
    """The `ModelConfig` part (what the TFX Trainer takes), without the task choices."""
    return ModelConfig(**{field.name: getattr(self, field.name)
                          for field in dataclasses.fields(ModelConfig)})


def config_for(trained_as: str, hp: ModelConfig) -> ModelConfig:
  """`hp` with `model` and `first_order` set for one of the `TRAINED_AS` values."""
  if trained_as not in _MODEL_OF:
    raise ValueError(f"unknown model kind {trained_as!r}; expected one of {sorted(_MODEL_OF)}")
  model, first_order = _MODEL_OF[trained_as]
  return hp.replace(model=model, first_order=first_order)


def build_model(trained_as: str, hp: Hyperparameters, num_items: int,
                num_members: int) -> PersonalizedRanker:
  """A compiled, un-trained model for one of the `TRAINED_AS` values (trained on `hp`'s tasks)."""
  return model_factory.build_model(config_for(trained_as, hp), num_items, num_members,
                                   hp.training_task_settings())


def training_tasks(hp: Hyperparameters, train_arrays: Dict[str, np.ndarray]) -> Tasks:
  """The training tasks `hp` asks for: the Trainer's recipe (`tasks.training_tasks`).

  Every training interaction is a training target once, for every method;
  history tasks (`hp.task_history > 0`) are trained on their query side by
  the plain models (`model_factory.build_model`).
  """
  return tasks_lib.training_tasks(train_arrays, hp.training_task_settings())


def train(trained_as: str, hp: Hyperparameters, tasks: Tasks, num_items: int, num_members: int,
          seed: int, callbacks: Sequence[tf.keras.callbacks.Callback] = ()
          ) -> Tuple[PersonalizedRanker, List[float]]:
  """Trains one model; returns it and its per-epoch training loss.

  `callbacks` go to `fit` (e.g. TensorBoard, `tensorboard_logs.MamlProbe`).
  """
  tf.keras.utils.set_random_seed(seed)
  model = build_model(trained_as, hp, num_items, num_members)
  history = model.fit(tasks.dataset(hp.batch_size, shuffle=True, seed=seed), epochs=hp.epochs,
                      verbose=0, callbacks=list(callbacks))
  return model, [float(x) for x in history.history["loss"]]


def adapts_with_maml(method: str) -> bool:
  """Whether `method` trains a LiMAML model, which adapts with its MAML inner steps."""
  return _MODEL_OF[TRAINED_AS[method]][0] == model_config.LIMAML


def configure_for(method: str, model: PersonalizedRanker, hp: Hyperparameters) -> None:
  """Sets how `method` adapts at evaluation time.

  `fine_tune` takes its own steps and rate, `global` none, the LiMAML methods
  `hp.inner_steps` (their training value, unless an evaluation asks for
  others); the ID model keeps its own.
  """
  if method == "fine_tune":
    model.inner_steps, model.inner_lr = hp.fine_tune_steps, hp.fine_tune_lr
  elif method == "global":
    model.inner_steps = 0
  elif adapts_with_maml(method):
    model.inner_steps = hp.inner_steps


def query_scorer(model: PersonalizedRanker):
  """`model.score_query` as a `tf.function` to score several task sets with one trace.

  `reduce_retracing` generalises the support width, so truncated supports
  (the few-shot curve) reuse the trace.
  """
  return tf.function(model.score_query, reduce_retracing=True)


def score(model: PersonalizedRanker, tasks: Tasks, batch_size: int = 256,
          score_fn=None) -> Dict[str, np.ndarray]:
  """Scores every real query interaction of `tasks` after per-task adaptation.

  `score_fn`: a `query_scorer(model)` to reuse across calls; made fresh when None.

  Returns:
    Per-interaction arrays: `member` (task member key), `label`, `score`
    (logit) and `support_size` (of the interaction's task).
  """
  score_fn = score_fn or query_scorer(model)
  logits = np.concatenate([score_fn(b).numpy() for b in tasks.dataset(batch_size)], axis=0)
  mask = tasks.arrays[F.side_key(F.QUERY, F.MASK)] > 0
  rows = np.nonzero(mask)[0]
  return {"member": np.asarray(tasks.member_ids)[rows],
          "label": tasks.arrays[F.side_key(F.QUERY, F.LABEL)][mask],
          "score": logits[mask],
          "support_size": tasks.support_sizes[rows]}
