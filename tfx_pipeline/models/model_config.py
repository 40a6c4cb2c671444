"""Hyperparameters of the pipeline's Trainers, carried in their `custom_config`.

Plain values only (no TensorFlow import), so the CLI can read the defaults cheaply;
`tfx_pipeline.models.trainer.build_model` turns a config into a Keras model.
"""

import dataclasses
from typing import Any, Mapping, Tuple

LIMAML = "limaml"
GLOBAL = "global"
MODELS = (LIMAML, GLOBAL)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """What to train and how.

  Field names follow `limaml_keras.evaluation.methods.Hyperparameters`, which
  the Trainer builds the model from; the defaults are those tuned on the
  synthetic data, with fewer inner steps and epochs to keep the run short.

  Attributes:
    model: `limaml` (MAML-trained `LiMAMLModel`) or `global` (the
      non-personalised `GlobalModel` baseline).
    epochs: passes over the training tasks.
    batch_size: tasks per batch.
    learning_rate: Adam learning rate of the outer loop.
    inner_steps: MAML inner steps (`limaml` only).
    inner_lr: MAML inner learning rate (initial value when learnt).
    learn_inner_lr: learn one inner learning rate per Meta Block parameter.
    use_history: the Meta Block also reads a summary of the support set.
    first_order: first-order MAML.
    embedding_dim: size of the meta embedding.
    meta_hidden: hidden layers of the Meta Block.
    global_hidden: MLP of the Global Block.
    item_embedding_dim: size of the item-id embedding.
    num_cross_layers: DCN-v2 cross layers of the Global Block.
    seed: seed of initialisation and shuffling.
  """
  model: str = LIMAML
  epochs: int = 2
  batch_size: int = 64
  learning_rate: float = 3e-3
  inner_steps: int = 1
  inner_lr: float = 0.3
  learn_inner_lr: bool = True
  use_history: bool = True
  first_order: bool = False
  embedding_dim: int = 16
  meta_hidden: Tuple[int, ...] = (64,)
  global_hidden: Tuple[int, ...] = (64, 32)
  item_embedding_dim: int = 16
  num_cross_layers: int = 1
  seed: int = 0

  def __post_init__(self):
    if self.model not in MODELS:
      raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
    for name in ("epochs", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")

  def to_dict(self) -> dict:
    """A JSON-serialisable dict (what `from_dict` reads)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_dict(cls, value: Mapping[str, Any]) -> "ModelConfig":
    """Builds a config from a (partial) dict; unknown keys are an error."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
      raise ValueError(f"unknown model config keys {unknown}; expected some of {sorted(names)}")
    value = {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    return cls(**value)

  def replace(self, **changes) -> "ModelConfig":
    return dataclasses.replace(self, **changes)

  def baseline(self) -> "ModelConfig":
    """The global baseline trained alongside: same architecture, no meta-learning."""
    return self.replace(model=GLOBAL, use_history=False, learn_inner_lr=False)

