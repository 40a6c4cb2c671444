"""What model to train and how: the one hyperparameter config of LiMAML.

Plain values only (no TensorFlow import), so the CLI reads the defaults
cheaply. The TFX Trainer (`custom_config`), `limaml pipeline` flags and the
offline evaluation (`limaml_keras.evaluation`) all use `ModelConfig`;
`limaml_keras.model_factory.build_model` turns one into a compiled Keras
model. The defaults are written here only.
"""

import dataclasses
import math
from typing import Any, Mapping, Optional, Tuple

#: `model` values: MAML-trained `LiMAMLModel`, the non-personalised
#: `GlobalModel` baseline, and the wide&deep `IdEmbeddingModel` baseline.
LIMAML = "limaml"
GLOBAL = "global"
ID_EMBEDDING = "id_embedding"
MODELS = (LIMAML, GLOBAL, ID_EMBEDDING)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Everything that shapes one training run.

  Attributes:
    model: one of `MODELS`.
    first_order: first-order MAML (`limaml` only).
    embedding_dim: size of the meta embedding.
    meta_hidden: hidden layers of the Meta Block.
    global_hidden: MLP of the Global Block.
    item_embedding_dim: size of the item-id embedding.
    num_cross_layers: DCN-v2 cross layers of the Global Block.
    learning_rate: Adam learning rate of the outer loop.
    batch_size: tasks per batch.
    epochs: passes over the training tasks.
    inner_steps: MAML inner steps in training and adaptation (`limaml`).
    inner_lr: MAML inner learning rate (initial value when learnt).
    learn_inner_lr: learn one inner learning rate per Meta Block parameter.
    use_history: the Meta Block also reads a summary of the support set.
    fine_tune_steps: adaptation steps of the `fine_tune` evaluation method.
    fine_tune_lr: its learning rate.
    id_l2: L2 penalty of the member-id embedding (`id_embedding`, and
      `limaml` with `member_id_embedding`).
    meta_item_interaction: a bilinear meta-embedding x item term in the
      Global Block (every model).
    meta_in_tower: the meta embedding also feeds the Global Block's tower
      (False needs `meta_item_interaction`: personalisation only through the
      bilinear term).
    meta_offset: the meta embedding's last dimension is a member-level logit
      offset the tower and the bilinear term do not read (every model;
      `GlobalBlock`).
    bilinear_evidence: the bilinear term reads the member's own evidence (the
      meta embedding minus the Meta Block's no-support prior) instead of the
      whole meta embedding, so a member with no support and no ID row is
      ordered by the tower alone (every model; needs `meta_item_interaction`;
      `PersonalizedRanker(bilinear_evidence=True)`).
    evidence_in_tower: the Global Block's tower reads the evidence too, so a
      member with no support and no ID row is ordered from member features
      alone (every model; needs `bilinear_evidence` and `meta_in_tower`;
      `GlobalBlock(evidence_in_tower=True)`).
    support_items: `limaml`: the Meta Block reads support item ids ("none",
      "shared" with the Global Block's item embedding, or "own").
    train_support_sizes: `limaml`: support sizes sampled in meta-training
      (empty: the tasks' own).
    max_inner_lr: `limaml`: bound of the learned inner learning rates (None:
      unbounded).
    member_id_embedding: `limaml`: also a member-id embedding (the paper's
      baseline plus the meta embedding).
    ranking_loss_weight: λ of a within-member pairwise ranking term added
      to the binary cross-entropy of the training objective (every model:
      the training targets of a task; `limaml`: the outer query loss). The
      term sees only score differences inside a task, so it trains the
      ordering of a member's items. 0: off.
    inner_ranking_loss_weight: the same term in the support loss of the
      inner loop (`limaml` adaptation, and `fine_tune`). 0: off.
    inner_pseudo_count: c; the inner loop's support loss of a member with n
      support interactions is scaled by n / (n + c) (shrinkage towards the
      meta-learnt prior for small supports). 0: off.
    member_id_dropout: share of training tasks (drawn per task and step)
      whose member id is replaced by the unknown id 0, so the model also
      learns to score a member it does not know from their features and
      support alone: the path of new members (`id_embedding`, and `limaml`
      with `member_id_embedding`). 0: off.
    unadapted_loss_weight: `limaml`: weight of the un-adapted model's query
      loss added to the outer loss (`LiMAMLModel`), so the meta-learnt prior
      and the member-ID rows also score well without adaptation. 0: off.
    new_member_loss_weight: `limaml`: weight of the query loss of each task
      scored as a new member (no support, unknown id) added to the outer
      loss (`LiMAMLModel`). 0: off.
    adapt_offset_only: `limaml`: the inner loop moves only the member-level
      logit offset (needs `meta_offset`; `LiMAMLModel(adapt_offset_only=True)`).
      False: every Meta Block weight adapts.
    support_gate: `limaml`: learn how far a support of n interactions moves
      the Meta Block's output from its no-support prior, `n / (n + c)` with
      a learned pseudo-count c per embedding dimension
      (`PersonalizedRanker(support_gate=True)`). False: off.
    support_gate_count: `limaml` with `support_gate`: the initial
      pseudo-count c (> 0); a support of c interactions starts half-trusted.
    ema_momentum: m > 0 keeps an exponential moving average of the weights
      during training (Keras' `use_ema`: average <- m * average + (1 - m) *
      weights after every step) and ends training with the average: less
      dependence on where the last steps of one seed's training landed.
      0: off.
    seed: seed of initialisation and shuffling.
  """
  model: str = LIMAML
  first_order: bool = False
  embedding_dim: int = 16
  meta_hidden: Tuple[int, ...] = (64,)
  global_hidden: Tuple[int, ...] = (64, 32)
  item_embedding_dim: int = 16
  num_cross_layers: int = 1
  learning_rate: float = 1e-3
  batch_size: int = 32
  epochs: int = 5
  inner_steps: int = 3
  inner_lr: float = 0.5
  learn_inner_lr: bool = False
  use_history: bool = False
  fine_tune_steps: int = 3
  fine_tune_lr: float = 0.1
  id_l2: float = 1e-4
  meta_item_interaction: bool = False
  meta_in_tower: bool = True
  meta_offset: bool = False
  bilinear_evidence: bool = False
  evidence_in_tower: bool = False
  support_items: str = "none"
  train_support_sizes: Tuple[int, ...] = ()
  max_inner_lr: Optional[float] = None
  member_id_embedding: bool = False
  ranking_loss_weight: float = 0.0
  inner_ranking_loss_weight: float = 0.0
  inner_pseudo_count: float = 0.0
  member_id_dropout: float = 0.0
  unadapted_loss_weight: float = 0.0
  new_member_loss_weight: float = 0.0
  adapt_offset_only: bool = False
  support_gate: bool = False
  support_gate_count: float = 1.0
  ema_momentum: float = 0.0
  seed: int = 0

  def __post_init__(self):
    if self.model not in MODELS:
      raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
    for name in ("epochs", "batch_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be >= 1 (a whole number), got {value!r}")
    if isinstance(self.inner_steps, bool) or not isinstance(self.inner_steps, int) or \
        self.inner_steps < 0:
      raise ValueError(f"inner_steps must be >= 0 (a whole number), got {self.inner_steps!r}")
    if not self.meta_in_tower and not self.meta_item_interaction:
      raise ValueError("meta_in_tower=False needs meta_item_interaction=True: otherwise the "
                       "meta embedding would not reach the logit at all")
    if not isinstance(self.bilinear_evidence, bool):
      raise ValueError(f"bilinear_evidence must be True or False, got {self.bilinear_evidence!r}")
    if self.bilinear_evidence and not self.meta_item_interaction:
      raise ValueError("bilinear_evidence=True needs meta_item_interaction=True: it chooses what "
                       "the bilinear term reads")
    if not isinstance(self.evidence_in_tower, bool):
      raise ValueError(f"evidence_in_tower must be True or False, got {self.evidence_in_tower!r}")
    if self.evidence_in_tower and not (self.bilinear_evidence and self.meta_in_tower):
      raise ValueError("evidence_in_tower=True needs bilinear_evidence=True and "
                       "meta_in_tower=True")
    if self.meta_offset and self.embedding_dim < 2:
      raise ValueError(f"meta_offset needs embedding_dim >= 2, got {self.embedding_dim!r}")
    for name in ("ranking_loss_weight", "inner_ranking_loss_weight", "inner_pseudo_count",
                 "unadapted_loss_weight", "new_member_loss_weight"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, (int, float)) or \
          not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if isinstance(self.member_id_dropout, bool) or \
        not isinstance(self.member_id_dropout, (int, float)) or \
        not 0.0 <= self.member_id_dropout < 1.0:
      raise ValueError(f"member_id_dropout must be in [0, 1), got {self.member_id_dropout!r}")
    if not isinstance(self.adapt_offset_only, bool):
      raise ValueError(f"adapt_offset_only must be True or False, got {self.adapt_offset_only!r}")
    if self.adapt_offset_only and not self.meta_offset:
      raise ValueError("adapt_offset_only=True needs meta_offset=True: the offset is what the "
                       "inner loop moves")
    if not isinstance(self.support_gate, bool):
      raise ValueError(f"support_gate must be True or False, got {self.support_gate!r}")
    if isinstance(self.support_gate_count, bool) or \
        not isinstance(self.support_gate_count, (int, float)) or \
        not math.isfinite(self.support_gate_count) or self.support_gate_count <= 0:
      raise ValueError(f"support_gate_count must be a finite number > 0, got "
                       f"{self.support_gate_count!r}")
    if isinstance(self.ema_momentum, bool) or not isinstance(self.ema_momentum, (int, float)) or \
        not 0.0 <= self.ema_momentum < 1.0:
      raise ValueError(f"ema_momentum must be in [0, 1), got {self.ema_momentum!r}")

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
    """A copy with `changes` (validated)."""
    return dataclasses.replace(self, **changes)

  def baseline(self) -> "ModelConfig":
    """The global baseline trained alongside: same architecture, no meta-learning."""
    return self.replace(model=GLOBAL, use_history=False, learn_inner_lr=False)
