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
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from limaml_keras import tensor_layout as F
from limaml_keras.layers import GlobalBlock, MetaBlock
from limaml_keras.evaluation.method_names import METHODS, TRAINED_AS
from limaml_keras.model import GlobalModel, IdEmbeddingModel, LiMAMLModel, PersonalizedRanker
from limaml_keras.evaluation import protocol
from limaml_keras.tasks import Tasks


@dataclasses.dataclass(frozen=True)
class Hyperparameters:
  """Everything that shapes one training run (shared by all methods unless noted)."""
  embedding_dim: int = 16
  meta_hidden: Tuple[int, ...] = (64,)
  global_hidden: Tuple[int, ...] = (64, 32)
  item_embedding_dim: int = 16
  num_cross_layers: int = 1
  learning_rate: float = 1e-3
  batch_size: int = 32
  epochs: int = 5
  window: int = 40
  inner_steps: int = 3          # limaml*: inner steps in training and adaptation
  inner_lr: float = 0.5         # limaml*
  learn_inner_lr: bool = False  # limaml*
  use_history: bool = False     # limaml*: Meta Block also reads a summary of the support set
  fine_tune_steps: int = 3      # fine_tune
  fine_tune_lr: float = 0.1     # fine_tune
  id_l2: float = 1e-4           # id_embedding
  meta_item_interaction: bool = False  # all: bilinear meta-embedding x item term in the Global Block
  support_items: str = "none"   # limaml*: Meta Block reads support item ids ("none"/"shared"/"own")
  train_support_sizes: Tuple[int, ...] = ()  # limaml*: support sizes sampled in meta-training
  max_inner_lr: Optional[float] = None  # limaml*: bound of the learned inner learning rates
  member_id_embedding: bool = False  # limaml*: also the member-ID embedding (paper: baseline + meta)
  task_history: int = 0         # limaml*: meta-train on history tasks (see protocol.training_tasks)

  def replace(self, **changes) -> "Hyperparameters":
    return dataclasses.replace(self, **changes)


def build_model(trained_as: str, hp: Hyperparameters, num_items: int,
                num_members: int) -> PersonalizedRanker:
  """A compiled, un-trained model for one of the `TRAINED_AS` values."""
  meta = MetaBlock(hidden_units=hp.meta_hidden, embedding_dim=hp.embedding_dim)
  ranker = GlobalBlock(num_items=num_items, item_embedding_dim=hp.item_embedding_dim,
                       num_cross_layers=hp.num_cross_layers, hidden_units=hp.global_hidden,
                       meta_item_interaction=hp.meta_item_interaction)
  if trained_as == "global":
    model = GlobalModel(meta, ranker)
  elif trained_as == "id_embedding":
    model = IdEmbeddingModel(meta, ranker, num_members=num_members, id_l2=hp.id_l2)
  elif trained_as in ("limaml", "limaml_first_order"):
    model = LiMAMLModel(meta, ranker, inner_steps=hp.inner_steps, inner_lr=hp.inner_lr,
                        learn_inner_lr=hp.learn_inner_lr, use_history=hp.use_history,
                        support_items=hp.support_items,
                        support_item_dim=hp.item_embedding_dim,
                        train_support_sizes=hp.train_support_sizes,
                        max_inner_lr=hp.max_inner_lr,
                        num_members=num_members if hp.member_id_embedding else 0,
                        id_l2=hp.id_l2,
                        first_order=trained_as == "limaml_first_order")
  else:
    raise ValueError(f"unknown model kind {trained_as!r}; expected one of {sorted(set(TRAINED_AS.values()))}")
  model.compile(optimizer=tf.keras.optimizers.Adam(hp.learning_rate))
  return model


def training_tasks(trained_as: str, hp: Hyperparameters, train_arrays: Dict[str, np.ndarray]
                   ) -> Tasks:
  """The training tasks of one model kind.

  Baselines always get the plain windows (every interaction a target once);
  MAML models get history tasks when `hp.task_history > 0`.
  """
  history = hp.task_history if trained_as.startswith("limaml") else 0
  return protocol.training_tasks(train_arrays, window=hp.window, history=history)


def train(trained_as: str, hp: Hyperparameters, tasks: Tasks, num_items: int, num_members: int,
          seed: int) -> Tuple[PersonalizedRanker, List[float]]:
  """Trains one model; returns it and its per-epoch training loss."""
  tf.keras.utils.set_random_seed(seed)
  model = build_model(trained_as, hp, num_items, num_members)
  history = model.fit(tasks.dataset(hp.batch_size, shuffle=True, seed=seed), epochs=hp.epochs,
                      verbose=0)
  return model, [float(x) for x in history.history["loss"]]


def configure_for(method: str, model: PersonalizedRanker, hp: Hyperparameters) -> None:
  """Sets how `method` adapts at evaluation time (only `fine_tune` differs from training)."""
  if method == "fine_tune":
    model.inner_steps, model.inner_lr = hp.fine_tune_steps, hp.fine_tune_lr
  elif method == "global":
    model.inner_steps = 0


def score(model: PersonalizedRanker, tasks: Tasks, batch_size: int = 256) -> Dict[str, np.ndarray]:
  """Scores every real query interaction of `tasks` after per-task adaptation.

  Returns:
    Per-interaction arrays: `member` (task member key), `label`, `score`
    (logit) and `support_size` (of the interaction's task).
  """
  score_fn = tf.function(model.score_query, reduce_retracing=True)
  logits = np.concatenate([score_fn(b).numpy() for b in tasks.dataset(batch_size)], axis=0)
  mask = tasks.arrays[F.side_key(F.QUERY, F.MASK)] > 0
  rows = np.nonzero(mask)[0]
  return {"member": np.asarray(tasks.member_ids)[rows],
          "label": tasks.arrays[F.side_key(F.QUERY, F.LABEL)][mask],
          "score": logits[mask],
          "support_size": tasks.support_sizes[rows]}
