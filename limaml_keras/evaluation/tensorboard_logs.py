"""TensorBoard logs of an evaluation: one run per method and seed.

Layout under the log root (open it with `tensorboard --logdir <root>`)::

    <root>/<method>/seed_<s>/train/       Keras: loss, auc, regularization_loss,
                                          total_loss per epoch (trained methods)
    <root>/<method>/seed_<s>/maml/        LiMAML only, per epoch, on a fixed probe
                                          batch of training tasks: support loss
                                          before and after the inner loop, their
                                          difference (the adaptation gain), the
                                          adapted query loss, and the mean learned
                                          inner learning rate per Meta Block weight
                                          when Meta-SGD is on
    <root>/<method>/seed_<s>/evaluation/  the scored query period: gauc, auc,
                                          log_loss, ece with step = support size n
                                          of the few-shot curve

The model's `train_step` reports only loss/AUC, so the MAML quantities are
measured by `MamlProbe` through the model's public adaptation API
(`adapt_embeddings`, `score_logits`) at the end of every epoch.
`fine_tune` reuses the `global` model's training, so its run holds only the
`evaluation` scalars.
"""

import os
from typing import Dict, Mapping

import numpy as np
import tensorflow as tf

from limaml_keras import tensor_layout as F
from limaml_keras.tasks import Tasks, flatten_interactions

#: Training tasks the MAML probe adapts each epoch.
PROBE_TASKS = 256


def run_dir(root: str, method: str, seed: int) -> str:
  """The run directory of one method and seed."""
  return os.path.join(root, method, f"seed_{seed}")


def keras_callback(root: str, method: str, seed: int) -> tf.keras.callbacks.TensorBoard:
  """The stock Keras TensorBoard callback (epoch scalars, no graph, no profiler)."""
  return tf.keras.callbacks.TensorBoard(log_dir=run_dir(root, method, seed), write_graph=False,
                                        profile_batch=0, update_freq="epoch")


def probe_tasks(tasks: Tasks, size: int = PROBE_TASKS) -> Tasks:
  """The first `size` tasks that have both support and query (a fixed probe)."""
  usable = np.flatnonzero((tasks.support_sizes > 0) & (tasks.query_sizes > 0))[:size]
  return tasks.select(usable)


def _masked_mean_loss(labels, logits) -> float:
  return float(np.mean(np.logaddexp(0.0, logits) - labels * logits)) if len(labels) else float(
      "nan")


def maml_quantities(model, tasks: Tasks) -> Dict[str, float]:
  """Support loss before/after adaptation, adapted query loss and learned inner lrs.

  Args:
    model: a `PersonalizedRanker` with `inner_steps > 0`.
    tasks: probe tasks (with support and query).

  Returns:
    `{"support_loss_before", "support_loss_after", "adaptation_gain",
    "query_loss_after", "query_loss_before", "inner_lr/<i>"...}` (means over
    the probe's real interactions; inner lrs only when they are learned).
  """
  batch = {k: tf.convert_to_tensor(v) for k, v in tasks.arrays.items()}
  steps = model.inner_steps
  try:
    model.inner_steps = 0
    before = model.adapt_embeddings(batch).numpy()
  finally:
    model.inner_steps = steps
  after = model.adapt_embeddings(batch).numpy()
  values = {}
  for side in (F.SUPPORT, F.QUERY):
    rows = flatten_interactions(tasks, sides=(side,), include_task_index=True)
    task_index = rows.pop("task_index")
    labels = rows.pop(F.LABEL).astype(np.float64)
    rows.pop(F.MEMBER_ID, None)
    for name, embeddings in (("before", before), ("after", after)):
      inputs = dict(rows, **{F.META_EMBEDDING: embeddings[task_index]})
      logits = model.score_logits(inputs).numpy().astype(np.float64)
      values[f"{side}_loss_{name}"] = _masked_mean_loss(labels, logits)
  values["adaptation_gain"] = values["support_loss_before"] - values["support_loss_after"]
  learned = [w for w in model.weights if "inner_lr" in w.name]
  for i, weight in enumerate(learned):
    values[f"inner_lr/{i}"] = float(np.mean(weight.numpy()))
  return values


class MamlProbe(tf.keras.callbacks.Callback):
  """Logs `maml_quantities` on a fixed probe batch at the end of every epoch."""

  def __init__(self, log_dir: str, tasks: Tasks):
    super().__init__()
    self._tasks = probe_tasks(tasks)
    self._writer = tf.summary.create_file_writer(os.path.join(log_dir, "maml"))

  def on_epoch_end(self, epoch, logs=None):
    if not len(self._tasks):
      return
    with self._writer.as_default():
      for name, value in maml_quantities(self.model, self._tasks).items():
        tf.summary.scalar(name, value, step=epoch)
    self._writer.flush()

  def on_train_end(self, logs=None):
    self._writer.close()


def write_evaluation(root: str, method: str, seed: int,
                     few_shot: Mapping[int, Mapping[str, float]]) -> None:
  """Writes the few-shot metrics of one method and seed (step = support size n)."""
  writer = tf.summary.create_file_writer(os.path.join(run_dir(root, method, seed), "evaluation"))
  with writer.as_default():
    for n, record in sorted(few_shot.items()):
      for name in ("gauc", "auc", "log_loss", "ece"):
        value = record.get(name)
        if value is not None and np.isfinite(value):
          tf.summary.scalar(f"few_shot/{name}", value, step=int(n))
  writer.close()
