"""LiMAML Keras models: MAML-trained personalised ranker and its baselines.

All models share one layout: a `MetaBlock` (member side, adapted per member)
feeding a `GlobalBlock` (shared ranker). They differ only in how they train:

* `LiMAMLModel` — MAML. For each task (member) in a batch, `inner_steps`
  gradient steps adapt the Meta Block on the support interactions; the
  adapted model's query loss trains both blocks. All tasks are adapted at once:
  per-task fast weights are `[T, ...]` tensors applied with `einsum`, and the
  gradient of the *sum* of per-task support losses w.r.t. those tensors is
  every task's own gradient, in one call.
* `GlobalModel` — plain training on every interaction. With `inner_steps=0`
  it is the non-personalised global baseline; with `inner_steps>0` its Meta
  Block is fine-tuned per member at evaluation time (the fine-tuning baseline).
* `IdEmbeddingModel` — wide&deep-style member-ID embedding added to the meta
  embedding, trained plainly.

The user-facing contract is Keras': `compile(optimizer)`, `fit`, `evaluate`,
`save`. Batches are task batches (see `limaml_keras.tensor_layout`).
"""

import itertools
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from limaml_keras import losses as losses_lib
from limaml_keras import task_batch as task_batch_lib
from limaml_keras import tensor_layout as F
from limaml_keras.layers import GlobalBlock, MetaBlock

#: Values of `PersonalizedRanker(support_items=...)`.
SUPPORT_ITEMS = ("none", "shared", "own")


class PersonalizedRanker(tf.keras.Model):
  """Base of all LiMAML models: Meta Block + Global Block + the inner loop.

  Subclasses implement `train_step`. Everything else — adaptation,
  evaluation, serving-time scoring, serialisation — lives here.

  Args:
    meta_block: the member-side `MetaBlock`.
    global_block: the shared `GlobalBlock`.
    inner_steps: k, gradient steps that adapt the Meta Block per task.
    inner_lr: α, the inner learning rate (initial value when learnt).
    learn_inner_lr: learn one inner learning rate per Meta Block parameter
      (Meta-SGD) in the outer loop.
    first_order: treat inner gradients as constants (first-order MAML).
    use_history: also feed the Meta Block a summary of the member's support
      interactions (`support_history`): the mean item features of their
      positive and of their negative interactions and the log-counts. Cold
      start (no support, or scoring without a support set) sees zeros.
    support_items: the Meta Block also reads the member's support items
      themselves: item-id embeddings averaged over the positive and over the
      negative support interactions, plus log-counts (a labelled "bag of
      recent items"). "none" (off), "shared" (the Global Block's item-id
      embedding table; needs `num_items > 0`) or "own" (a separate table of
      `support_item_dim` columns). Cold start sees zeros.
    support_item_dim: width of the "own" table.
    train_support_sizes: support sizes sampled (uniformly, per task and step)
      during meta-training: each task keeps only its latest k support
      interactions, so training matches the few-shot curve; 0 trains the
      un-adapted Meta Block as the cold-start prior. Empty: the full support.
    max_inner_lr: upper bound of the learned inner learning rates (Meta-SGD
      rates are clipped to [0, max_inner_lr]); None: unbounded.
    num_members: > 0 adds a wide&deep member-ID embedding (vocabulary size
      including the unknown id 0) to the meta embedding — the ID-embedding
      baseline, or with MAML the paper's "baseline plus meta embedding".
      Members outside the vocabulary (id 0 or >= `num_members`) share row 0.
    id_l2: L2 penalty on the member-ID embedding rows a batch uses (an
      activity regulariser, so its cost does not grow with the table).
    ranking_loss_weight: λ of a within-member ranking term added to the
      training objective: λ times the pairwise logistic loss among each
      task's training targets (`masked_pairwise_losses`; LiMAML: the query
      interactions of the outer loss). 0 (off): plain binary cross-entropy.
    inner_ranking_loss_weight: the same term, with this weight, added to the
      support loss the inner loop (MAML adaptation, fine-tuning) descends, so
      adaptation spends its steps on ordering a member's items rather than
      on a member-level offset. 0: off.
    inner_pseudo_count: c >= 0; each task's support loss in the inner loop is
      scaled by n / (n + c), n its support size, so a member with few
      support interactions moves less from the meta-learnt prior (shrinkage;
      a one-interaction support takes a step 1 / (1 + c) as large). 0: off.
    support_count_cap: the support counts the Meta Block reads (the
      log-counts of `use_history` and `support_items`) are clipped to this:
      the largest support of meta-training (`model_factory` sets it from the
      training tasks). A longer support still counts in full in the means
      and the inner loop's loss; only its count is clipped, so the Meta Block
      never reads a count it was not trained on. (Unclipped, MovieLens-100K
      members with 300+ support interactions, against 50 in training, got
      adapted logits of |z| ~ 4e4.) The n of `support_gate` is clipped the
      same way. None: not clipped.
    member_id_dropout: in training, each task's member id is replaced by the
      unknown id 0 with this probability (`task_batch.drop_member_ids`), so
      the member-ID path does not carry everything and a member the model
      does not know (a new member: row 0) is scored from features and support
      as well as possible. 0: off (the default).
    support_gate: learn how far a support of n interactions moves the meta
      embedding from the meta-learnt prior: the Meta Block's output becomes
      `prior + n / (n + c) * (adapted - prior)`, where `prior` is its output
      with no support (θm, no support summary) and `c > 0` is a pseudo-count
      per embedding dimension learned in the outer loop (initially
      `support_gate_count`). It gates both what the Meta Block reads from the
      support and the inner loop's steps; no support (n = 0) gives the prior
      exactly. False: off.
    support_gate_count: the initial pseudo-count c of `support_gate` (> 0):
      a support of c interactions starts half-trusted.
    bilinear_evidence: the Global Block's bilinear meta × item term
      (`meta_item_interaction`, needed) reads the member's own evidence — the
      meta embedding minus the Meta Block's no-support prior: the change the
      support made (gated, with `support_gate`) plus the member-ID row —
      instead of the whole meta embedding. A member the model knows nothing
      about (no support, unknown id) then gets no bilinear term: their items
      are ordered by the tower, from member features, as the global model
      orders them; the term re-orders items only from what a member showed.
      The served meta embedding stays the one d-wide vector: scoring
      recomputes the prior from the member features. With
      `GlobalBlock(evidence_in_tower=True)` the tower reads the evidence too.
      False: off.
  """

  _TF_MODULE_IGNORED_PROPERTIES = frozenset(itertools.chain(
      ("_adapt_function",), tf.keras.Model._TF_MODULE_IGNORED_PROPERTIES))

  def __init__(self,
               meta_block: MetaBlock,
               global_block: GlobalBlock,
               inner_steps: int = 1,
               inner_lr: float = 0.1,
               learn_inner_lr: bool = False,
               first_order: bool = False,
               use_history: bool = False,
               support_items: str = "none",
               support_item_dim: int = 16,
               train_support_sizes: Sequence[int] = (),
               max_inner_lr: Optional[float] = None,
               num_members: int = 0,
               id_l2: float = 0.0,
               ranking_loss_weight: float = 0.0,
               inner_ranking_loss_weight: float = 0.0,
               inner_pseudo_count: float = 0.0,
               support_count_cap: Optional[int] = None,
               member_id_dropout: float = 0.0,
               support_gate: bool = False,
               support_gate_count: float = 1.0,
               bilinear_evidence: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    for name, value in (("ranking_loss_weight", ranking_loss_weight),
                        ("inner_ranking_loss_weight", inner_ranking_loss_weight),
                        ("inner_pseudo_count", inner_pseudo_count)):
      if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {value}.")
    self.ranking_loss_weight = float(ranking_loss_weight)
    self.inner_ranking_loss_weight = float(inner_ranking_loss_weight)
    self.inner_pseudo_count = float(inner_pseudo_count)
    if support_count_cap is not None and (isinstance(support_count_cap, bool) or
                                          int(support_count_cap) != support_count_cap or
                                          support_count_cap < 1):
      raise ValueError(f"`support_count_cap` must be a whole number >= 1 or None, got "
                       f"{support_count_cap!r}.")
    self.support_count_cap = None if support_count_cap is None else int(support_count_cap)
    if isinstance(member_id_dropout, bool) or not 0.0 <= member_id_dropout < 1.0:
      raise ValueError(f"`member_id_dropout` must be in [0, 1), got {member_id_dropout!r}.")
    self.member_id_dropout = float(member_id_dropout)
    if not isinstance(support_gate, (bool, np.bool_)):
      raise ValueError(f"`support_gate` must be True or False, got {support_gate!r}.")
    self.support_gate = bool(support_gate)
    if isinstance(support_gate_count, bool) or not np.isfinite(support_gate_count) or \
        support_gate_count <= 0:
      raise ValueError(f"`support_gate_count` must be a finite number > 0, got "
                       f"{support_gate_count!r}.")
    self.support_gate_count = float(support_gate_count)
    if bilinear_evidence and not global_block.get_config()["meta_item_interaction"]:
      raise ValueError("`bilinear_evidence` needs the Global Block's bilinear term "
                       "(GlobalBlock(meta_item_interaction=True)).")
    if global_block.get_config().get("evidence_in_tower") and not bilinear_evidence:
      raise ValueError("GlobalBlock(evidence_in_tower=True) needs `bilinear_evidence=True`: "
                       "that is what makes the model compute the evidence.")
    self.bilinear_evidence = bool(bilinear_evidence)
    self._gate_log_count = None
    if int(inner_steps) < 0:
      raise ValueError(f"`inner_steps` must be >= 0, got {inner_steps}.")
    if not np.isfinite(inner_lr) or inner_lr < 0:
      raise ValueError(f"`inner_lr` must be a finite number >= 0, got {inner_lr}.")
    self.meta_block = meta_block
    self.global_block = global_block
    self.inner_steps = int(inner_steps)
    self.inner_lr = float(inner_lr)
    self.learn_inner_lr = bool(learn_inner_lr)
    self.first_order = bool(first_order)
    self.use_history = bool(use_history)
    if support_items not in SUPPORT_ITEMS:
      raise ValueError(f"`support_items` must be one of {SUPPORT_ITEMS}, got {support_items!r}.")
    if support_items == "shared" and global_block.item_embedding is None:
      raise ValueError("`support_items='shared'` needs the Global Block's item-id embedding "
                       "(GlobalBlock(num_items > 0)).")
    if int(support_item_dim) <= 0:
      raise ValueError(f"`support_item_dim` must be positive, got {support_item_dim}.")
    self.support_items = support_items
    self.support_item_dim = int(support_item_dim)
    self.train_support_sizes = [int(k) for k in train_support_sizes]
    if any(k < 0 for k in self.train_support_sizes):
      raise ValueError(f"`train_support_sizes` must be >= 0, got {self.train_support_sizes}.")
    if max_inner_lr is not None and not (np.isfinite(max_inner_lr) and max_inner_lr > 0):
      raise ValueError(f"`max_inner_lr` must be a finite number > 0 or None, got {max_inner_lr}.")
    self.max_inner_lr = None if max_inner_lr is None else float(max_inner_lr)
    if int(num_members) < 0:
      raise ValueError(f"`num_members` must be >= 0, got {num_members}.")
    if not (np.isfinite(id_l2) and id_l2 >= 0):
      raise ValueError(f"`id_l2` must be a finite number >= 0, got {id_l2}.")
    self.num_members = int(num_members)
    self.id_l2 = float(id_l2)
    self.member_embedding = None
    if self.num_members:
      self.member_embedding = tf.keras.layers.Embedding(
          self.num_members, meta_block.embedding_dim, embeddings_initializer="zeros",
          activity_regularizer=tf.keras.regularizers.L2(self.id_l2) if self.id_l2 else None,
          name="member_id_embedding")
    self.support_item_embedding = None
    if support_items == "own":
      if not global_block.num_items:
        raise ValueError("`support_items='own'` needs item ids (GlobalBlock(num_items > 0)).")
      self.support_item_embedding = tf.keras.layers.Embedding(
          global_block.num_items, self.support_item_dim, name="support_item_embedding")
    self._dims = None
    self._inner_lrs = []
    self._adapt_function = None
    self._loss_tracker = tf.keras.metrics.Mean(name="loss")
    self._regularization_tracker = tf.keras.metrics.Mean(name="regularization_loss")
    self._auc = tf.keras.metrics.AUC(name="auc", from_logits=True)
    # Under tf.distribute every replica returns the same, all-reduced step results
    # (`_update_metrics`): Keras reports one replica's instead of their sum.
    self.distribute_reduction_method = "first"

  # ---------------------------------------------------------------- building
  @tf.autograph.experimental.do_not_convert
  def _build_for(self, member_dim: int, item_dim: int, context_dim: int) -> None:
    """Creates every variable for the given feature sizes (once)."""
    if self._dims is not None:
      return
    self._dims = task_batch_lib.FeatureDims(int(member_dim), int(item_dim), int(context_dim))
    with tf.init_scope():
      if not self.meta_block.built:
        history_dim = 2 * int(item_dim) + 2 if self.use_history else 0
        self.meta_block.build(tf.TensorShape(
            [None, int(member_dim) + history_dim + self._support_items_dim()]))
      if self.support_item_embedding is not None:
        self.support_item_embedding.build(tf.TensorShape([None]))
      self.global_block(self._dummy_interactions(1))
      if self.learn_inner_lr:
        # Appended, not reassigned: a checkpoint restores into the tracked list.
        self._inner_lrs.extend(
            self.add_weight(name=f"inner_lr_{i}", shape=w.shape, trainable=True,
                            initializer=tf.keras.initializers.Constant(self.inner_lr))
            for i, w in enumerate(self.meta_block.adaptable_weights))
      if self.support_gate:
        self._gate_log_count = self.add_weight(
            name="support_gate_log_count", shape=[self.meta_block.embedding_dim],
            initializer=tf.keras.initializers.Constant(np.log(self.support_gate_count)),
            trainable=True)
      self._build_extra()
      # The optimizer tracks every trainable variable from the start, not only those the
      # first step gives a gradient (a learned inner lr with inner_steps=0 never gets one):
      # with `use_ema`, ending training overwrites every trainable variable with its average.
      optimizer = getattr(self, "optimizer", None)
      if optimizer is not None and hasattr(optimizer, "build"):
        optimizer.build(self.trainable_variables)
    # `call` scores interaction batches; this lets `save` trace it for serving
    # and lets `load_model` rebuild the model (see `build`) before restoring.
    spec = self.interaction_spec()
    self._set_save_spec(spec)
    self._build_input_shape = {k: v.shape for k, v in spec.items()}
    self.built = True

  def build(self, input_shape):
    """Creates the variables for an interaction batch of the given shapes.

    Args:
      input_shape: dict from `member_features`, `item_features` and
        `context_features` to shapes `[N, D]` (what `interaction_spec` gives).
    """
    if not isinstance(input_shape, dict):
      raise ValueError("LiMAML models are built from a dict of interaction-batch shapes "
                       f"({F.MEMBER_FEATURES}, {F.ITEM_FEATURES}, {F.CONTEXT_FEATURES}); "
                       f"got {input_shape!r}.")
    dims = [tf.TensorShape(input_shape[k])[-1]
            for k in (F.MEMBER_FEATURES, F.ITEM_FEATURES, F.CONTEXT_FEATURES)]
    self._build_for(*dims)

  def _build_extra(self) -> None:
    """Builds the optional member-ID table (a hook for subclasses that own more variables)."""
    if self.member_embedding is not None:
      self.member_embedding.build(tf.TensorShape([None]))

  def interaction_spec(self, with_embedding: bool = False) -> Dict[str, tf.TensorSpec]:
    """`TensorSpec`s of the interaction batch `call` takes (model must be built)."""
    d = self._dims.as_dict()
    spec = {F.MEMBER_ID: tf.TensorSpec([None], tf.int64, name=F.MEMBER_ID),
            F.MEMBER_FEATURES: tf.TensorSpec([None, d["member_dim"]], tf.float32,
                                             name=F.MEMBER_FEATURES),
            F.ITEM_ID: tf.TensorSpec([None], tf.int64, name=F.ITEM_ID),
            F.ITEM_FEATURES: tf.TensorSpec([None, d["item_dim"]], tf.float32, name=F.ITEM_FEATURES),
            F.CONTEXT_FEATURES: tf.TensorSpec([None, d["context_dim"]], tf.float32,
                                              name=F.CONTEXT_FEATURES)}
    if with_embedding:
      spec[F.META_EMBEDDING] = tf.TensorSpec([None, self.meta_block.embedding_dim], tf.float32,
                                             name=F.META_EMBEDDING)
    return spec

  def _dummy_interactions(self, n: int) -> Dict[str, tf.Tensor]:
    d = self._dims.as_dict()
    return {F.META_EMBEDDING: tf.zeros([n, self.meta_block.embedding_dim]),
            F.MEMBER_ID: tf.zeros([n], tf.int64),
            F.MEMBER_FEATURES: tf.zeros([n, d["member_dim"]]),
            F.ITEM_ID: tf.zeros([n], tf.int64),
            F.ITEM_FEATURES: tf.zeros([n, d["item_dim"]]),
            F.CONTEXT_FEATURES: tf.zeros([n, d["context_dim"]])}

  @tf.autograph.experimental.do_not_convert
  def _build_from_task_batch(self, batch) -> None:
    task_batch_lib.validate_task_batch(batch, require_member_id=self._needs_member_id())
    dims = [batch[F.MEMBER_FEATURES].shape[-1],
            batch[F.side_key(F.SUPPORT, F.ITEM_FEATURES)].shape[-1],
            batch[F.side_key(F.SUPPORT, F.CONTEXT_FEATURES)].shape[-1]]
    if any(d is None for d in dims):
      raise ValueError("Feature sizes of a task batch must be static; got member/item/context "
                       f"sizes {dims}.")
    if self._dims is not None and list(self._dims.as_dict().values()) != dims:
      raise ValueError(f"Model was built for {self._dims}, got member/item/context "
                       f"sizes {dims}.")
    self._build_for(*dims)

  def get_build_config(self):
    return {"dims": self._dims.as_dict() if self._dims else None}

  def build_from_config(self, config):
    if config.get("dims"):
      self._build_for(**config["dims"])

  def _needs_member_id(self) -> bool:
    return self.member_embedding is not None

  # ------------------------------------------------------------- the model
  def _member_inputs(self, batch):
    """The Meta Block's input `[T, Dm (+ history)]`."""
    member_features = tf.cast(batch[F.MEMBER_FEATURES], tf.float32)
    parts = [member_features]
    has_support = F.side_key(F.SUPPORT, F.MASK) in batch
    num_tasks = tf.shape(member_features)[0]
    if self.use_history:
      parts.append(task_batch_lib.support_history(batch, self._count_cap()) if has_support else
                   tf.zeros([num_tasks, 2 * self._dims.item_dim + 2]))
    if self.support_items != "none":
      if has_support:
        items = self._lookup_support_items(batch[F.side_key(F.SUPPORT, F.ITEM_ID)])
        parts.append(task_batch_lib.labelled_support_pool(batch, items, self._count_cap()))
      else:
        parts.append(tf.zeros([num_tasks, self._support_items_dim()]))
    return parts[0] if len(parts) == 1 else tf.concat(parts, axis=-1)

  def _count_cap(self) -> Optional[float]:
    return None if self.support_count_cap is None else float(self.support_count_cap)

  def _support_items_dim(self) -> int:
    if self.support_items == "none":
      return 0
    width = (self.support_item_dim if self.support_items == "own"
             else self.global_block.get_config()["item_embedding_dim"])
    return 2 * width + 2

  def _lookup_support_items(self, item_id):
    if self.support_items == "own":
      item_id = tf.cast(item_id, tf.int64)
      num_items = self.global_block.num_items
      return self.support_item_embedding(
          tf.where((item_id >= 0) & (item_id < num_items), item_id, 0))
    return self.global_block.lookup_items(item_id)

  def _member_embedding(self, batch, fast_weights=None):
    """Meta embedding `[T, d]` of each task's member (fast weights or θm), plus its ID row."""
    embedding = self.meta_block(self._member_inputs(batch), fast_weights=fast_weights)
    if self.support_gate:
      embedding = self._gated(batch, embedding)
    if self.member_embedding is None:
      return embedding
    member_id = tf.cast(batch.get(F.MEMBER_ID, tf.zeros(tf.shape(batch[F.MEMBER_FEATURES])[:1],
                                                         tf.int64)), tf.int64)
    member_id = tf.where((member_id > 0) & (member_id < self.num_members), member_id, 0)
    return embedding + self.member_embedding(member_id)

  def _prior(self, batch):
    """The Meta Block's output with no support (θm, no support summary): `[T, d]`.

    Recomputed at each use on purpose: one pass shared by the gate's and the
    evidence term's uses made `fit` irreproducible (same seed, other digits
    from run to run; likely the varying order in which the shared tensor's
    many gradients were summed).
    """
    return self.meta_block(self._member_inputs({F.MEMBER_FEATURES: batch[F.MEMBER_FEATURES]}))

  def _evidence(self, batch, embeddings):
    """`bilinear_evidence`'s input: `embeddings` − the no-support prior, `[B, d]`."""
    return embeddings - self._prior(batch)

  def _gated(self, batch, embedding):
    """`prior + n / (n + c) * (embedding - prior)` per task (see `support_gate`)."""
    prior = self._prior(batch)
    mask_key = F.side_key(F.SUPPORT, F.MASK)
    if mask_key not in batch:
      return prior
    count = tf.reduce_sum(tf.cast(batch[mask_key], tf.float32), axis=1, keepdims=True)
    if self.support_count_cap is not None:  # A trust it was trained with (`support_count_cap`).
      count = tf.minimum(count, self._count_cap())
    trust = count / (count + tf.exp(self._gate_log_count))
    return prior + trust * (embedding - prior)

  def _side_logits(self, batch, side: str, embeddings):
    """Scores every (padded) interaction of `side`: `[T, L]` logits."""
    item_features = batch[F.side_key(side, F.ITEM_FEATURES)]
    shape = tf.shape(item_features)
    num_tasks, length = shape[0], shape[1]

    def per_interaction(task_tensor):
      # [T, X] -> [T * L, X]: each task's row repeated for each of its interactions.
      return tf.repeat(task_tensor, length, axis=0)

    def flat(tensor):
      return tf.reshape(tensor, tf.concat([[num_tasks * length], tf.shape(tensor)[2:]], 0))

    inputs = {
        F.META_EMBEDDING: per_interaction(embeddings),
        F.MEMBER_FEATURES: per_interaction(tf.cast(batch[F.MEMBER_FEATURES], tf.float32)),
        F.ITEM_ID: flat(batch[F.side_key(side, F.ITEM_ID)]),
        F.ITEM_FEATURES: flat(item_features),
        F.CONTEXT_FEATURES: flat(batch[F.side_key(side, F.CONTEXT_FEATURES)]),
    }
    if self.bilinear_evidence:  # Per task, then per interaction.
      inputs[F.META_EVIDENCE] = per_interaction(self._evidence(batch, embeddings))
    return tf.reshape(self.global_block(inputs), [num_tasks, length])

  def _side_losses(self, batch, side, embeddings):
    logits = self._side_logits(batch, side, embeddings)
    labels = tf.cast(batch[F.side_key(side, F.LABEL)], tf.float32)
    mask = tf.cast(batch[F.side_key(side, F.MASK)], tf.float32)
    losses, counts = losses_lib.masked_task_losses(logits, labels, mask)
    return logits, labels, mask, losses, counts

  def adapt_weights(self, batch, steps: Optional[int] = None,
                    first_order: Optional[bool] = None) -> List[tf.Tensor]:
    """Runs the inner loop: per-task fast weights of the Meta Block.

    Args:
      batch: a task batch.
      steps: inner steps (default `self.inner_steps`).
      first_order: stop gradients through the inner gradients (default
        `self.first_order`).

    Returns:
      The list of `[T, ...]` fast weights, in `MetaBlock.adaptable_weights`
      order. A task with no support keeps θm exactly (its gradient is zero).
    """
    steps = self.inner_steps if steps is None else steps
    first_order = self.first_order if first_order is None else first_order
    return self._inner_loop(batch, steps, first_order)[0]

  def _learning_rates(self):
    if not self._inner_lrs:
      return [self.inner_lr] * len(self.meta_block.adaptable_weights)
    if self.max_inner_lr is None:
      return list(self._inner_lrs)
    return [tf.clip_by_value(lr, 0.0, self.max_inner_lr) for lr in self._inner_lrs]

  def _inner_loop(self, batch, steps: int, first_order: bool):
    """Returns `(fast_weights, summed_inner_gradients)` after `steps` steps."""
    self._build_from_task_batch(batch)
    fast = self.meta_block.stack_weights(tf.shape(batch[F.MEMBER_FEATURES])[0])
    sums = [tf.zeros_like(w) for w in fast]
    for _ in range(steps):
      with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(fast)
        embeddings = self._member_embedding(batch, fast)
        logits, labels, mask, losses, counts = self._side_losses(batch, F.SUPPORT, embeddings)
        if self.inner_ranking_loss_weight:
          losses += self.inner_ranking_loss_weight * losses_lib.masked_pairwise_losses(logits, labels, mask)[0]
        if self.inner_pseudo_count:
          losses *= counts / (counts + self.inner_pseudo_count)
        # Tasks are independent, so d(sum)/d(fast[t]) is task t's own gradient.
        total = tf.reduce_sum(losses)
      grads = self._adaptable_part(tape.gradient(total, fast))
      if first_order:
        grads = [tf.stop_gradient(g) for g in grads]
      fast = [w - lr * g for w, lr, g in zip(fast, self._learning_rates(), grads)]
      sums = [s + g for s, g in zip(sums, grads)]
    return fast, sums

  def _adaptable_part(self, gradients: List[tf.Tensor]) -> List[tf.Tensor]:
    """The inner gradients' part that moves the fast weights (all of it here)."""
    return gradients

  def _first_order_weights(self, batch, gradient_sums):
    """FOMAML fast weights θm − α·Σ g, with the inner gradients g as constants.

    Equal to `adapt_weights(batch, first_order=True)`, but the inner loop that
    produced `gradient_sums` can run outside the outer tape, so nothing of it
    is recorded for the meta-gradient (that is what makes first order cheap).
    """
    stacked = self.meta_block.stack_weights(tf.shape(batch[F.MEMBER_FEATURES])[0])
    return [w - lr * g for w, lr, g in zip(stacked, self._learning_rates(), gradient_sums)]

  def _query_loss(self, batch, fast_weights):
    """Mean over tasks that have query interactions of their query loss."""
    embeddings = self._member_embedding(batch, fast_weights)
    logits, labels, mask, losses, counts = self._side_losses(batch, F.QUERY, embeddings)
    has_query = tf.cast(counts > 0, tf.float32)
    # Under tf.distribute: this replica's share of the global batch's mean.
    loss = losses_lib.global_mean(tf.reduce_sum(losses * has_query), tf.reduce_sum(has_query))
    return loss, logits, labels, mask

  # ------------------------------------------------------------ Keras steps
  def _checked(self, batch):
    """Validates a task batch and adds finite/range checks on the labels."""
    batch, _, _ = tf.keras.utils.unpack_x_y_sample_weight(batch)
    self._build_from_task_batch(batch)
    batch = dict(batch)
    for side in task_batch_lib.SIDES:
      key = F.side_key(side, F.LABEL)
      label = tf.cast(batch[key], tf.float32)
      label = tf.debugging.assert_all_finite(label, f"{key} contains NaN or Inf")
      with tf.control_dependencies([tf.debugging.assert_less_equal(
          tf.abs(label - 0.5), 0.5, message=f"{key} must be in [0, 1]")]):
        batch[key] = tf.identity(label)
    return batch

  def _training_batch(self, data):
    """`_checked(data)` with the member-ID dropout of training applied."""
    return task_batch_lib.drop_member_ids(self._checked(data), self.member_id_dropout)

  def _regularization(self):
    return tf.add_n(self.losses) if self.losses else tf.constant(0.0)

  def _objective(self, loss, logits, labels, mask):
    """What the outer optimizer descends: `loss` + λ·ranking term + regularisation."""
    total = loss + losses_lib.replica_share(self._regularization())
    if self.ranking_loss_weight:
      total += self.ranking_loss_weight * losses_lib.ranking_loss(logits, labels, mask)
    return total

  def _update_metrics(self, loss, logits, labels, mask):
    """Updates the trackers and returns the step's results (running means over the epoch).

    `loss` is this replica's share of the global batch's loss (`global_mean`).
    """
    self._loss_tracker.update_state(losses_lib.sum_over_replicas(loss))
    self._regularization_tracker.update_state(
        losses_lib.sum_over_replicas(losses_lib.replica_share(self._regularization())))
    self._auc.update_state(labels, logits, sample_weight=mask)
    loss, regularization = self._loss_tracker.result(), self._regularization_tracker.result()
    return {"loss": loss, "auc": self._auc.result(), "regularization_loss": regularization,
            "total_loss": loss + regularization}

  @property
  def metrics(self):
    return [self._loss_tracker, self._regularization_tracker, self._auc]

  def _apply(self, tape, loss):
    variables = self.trainable_variables
    grads = tape.gradient(loss, variables)
    self.optimizer.apply_gradients(
        (g, v) for g, v in zip(grads, variables) if g is not None)

  def test_step(self, data):
    """Adapts on support (`inner_steps`), reports query loss and AUC."""
    batch = self._checked(data)
    fast = self.adapt_weights(batch) if self.inner_steps else None
    loss, logits, labels, mask = self._query_loss(batch, fast)
    return self._update_metrics(loss, logits, labels, mask)

  # --------------------------------------------------------- public helpers
  def call(self, inputs, training=None):
    """Scores an interaction batch: probabilities `[N]`.

    Args:
      inputs: dict with `member_features` `[N, Dm]`, `item_id` `[N]`,
        `item_features` `[N, Di]`, `context_features` `[N, Dc]`, and either
        `meta_embedding` `[N, d]` (adapted, e.g. looked up from the meta
        embedding table) or nothing, in which case the un-adapted Meta Block
        gives the cold-start embedding.
      training: unused (no dropout).
    """
    return tf.sigmoid(self.score_logits(inputs))

  def score_logits(self, inputs):
    """Like `call`, but returns logits."""
    missing = [k for k in (F.MEMBER_FEATURES, F.ITEM_ID, F.ITEM_FEATURES, F.CONTEXT_FEATURES)
               if k not in inputs]
    if missing:
      raise ValueError(f"Interaction batch is missing keys {missing}; it has {sorted(inputs)}.")
    inputs = dict(inputs)
    member_features = tf.cast(inputs[F.MEMBER_FEATURES], tf.float32)
    self._build_for(member_features.shape[-1], inputs[F.ITEM_FEATURES].shape[-1],
                    inputs[F.CONTEXT_FEATURES].shape[-1])
    inputs[F.MEMBER_FEATURES] = member_features
    if F.META_EMBEDDING not in inputs:
      inputs[F.META_EMBEDDING] = self._member_embedding(inputs)
    if self.bilinear_evidence:
      inputs[F.META_EVIDENCE] = self._evidence(inputs,
                                               tf.cast(inputs[F.META_EMBEDDING], tf.float32))
    return self.global_block(inputs)

  def embed(self, member_features, member_id=None) -> tf.Tensor:
    """Cold-start meta embeddings `[B, d]`: the un-adapted Meta Block, no history.

    Args:
      member_features: `[B, Dm]`.
      member_id: optional `[B]` member-vocabulary indices (0 = unknown). Given
        to a model with a member-ID embedding, each member's ID row is added,
        as `adapt` does; otherwise the result is the Meta Block's output alone.
    """
    if member_id is None:
      return self.meta_block(self._member_inputs({F.MEMBER_FEATURES: member_features}))
    return self._member_embedding({F.MEMBER_FEATURES: member_features, F.MEMBER_ID: member_id})

  def adapt_embeddings(self, batch) -> tf.Tensor:
    """Graph-friendly `adapt`: meta embeddings `[T, d]` after the inner loop.

    `batch` may hold only the `member_*` and `support_*` keys.
    """
    batch = task_batch_lib.with_empty_query(batch)
    fast = self.adapt_weights(batch, first_order=True) if self.inner_steps else None
    return tf.stop_gradient(self._member_embedding(batch, fast))

  def score_query(self, batch) -> tf.Tensor:
    """Query logits `[T, Q]` of a task batch, after adapting on its support.

    With `inner_steps=0` nothing is adapted (the global or ID-embedding
    model's own scores). Graph-friendly; wrap in `tf.function` for speed.
    """
    return self._side_logits(batch, F.QUERY, self.adapt_embeddings(batch))

  def adapt(self, task_batch) -> np.ndarray:
    """Adapts to each task's support set and returns its meta embedding.

    Args:
      task_batch: dict of arrays in the task-batch layout. Only `member_*` and
        `support_*` keys are needed.

    Returns:
      numpy `[T, d]`: `MetaBlock_{θm'_u}(member features of u)`. A task with
      no support gets the cold-start embedding.
    """
    batch = task_batch_lib.support_only_batch(task_batch)
    self._build_from_task_batch(batch)
    if self._adapt_function is None:
      self._adapt_function = tf.function(self.adapt_embeddings, reduce_retracing=True)
    return self._adapt_function(batch).numpy()

  def get_config(self):
    return {
        "meta_block": tf.keras.layers.serialize(self.meta_block),
        "global_block": tf.keras.layers.serialize(self.global_block),
        "inner_steps": self.inner_steps,
        "inner_lr": self.inner_lr,
        "learn_inner_lr": self.learn_inner_lr,
        "first_order": self.first_order,
        "use_history": self.use_history,
        "support_items": self.support_items,
        "support_item_dim": self.support_item_dim,
        "train_support_sizes": list(self.train_support_sizes),
        "max_inner_lr": self.max_inner_lr,
        "num_members": self.num_members,
        "id_l2": self.id_l2,
        "ranking_loss_weight": self.ranking_loss_weight,
        "inner_ranking_loss_weight": self.inner_ranking_loss_weight,
        "inner_pseudo_count": self.inner_pseudo_count,
        "support_count_cap": self.support_count_cap,
        "member_id_dropout": self.member_id_dropout,
        "support_gate": self.support_gate,
        "support_gate_count": self.support_gate_count,
        "bilinear_evidence": self.bilinear_evidence,
        "name": self.name,
    }

  @classmethod
  def from_config(cls, config, custom_objects=None):
    config = dict(config)
    for key in ("meta_block", "global_block"):
      config[key] = tf.keras.layers.deserialize(config[key], custom_objects=custom_objects)
    return cls(**config)


@tf.keras.utils.register_keras_serializable(package="LiMAML")
class LiMAMLModel(PersonalizedRanker):
  """Personalised ranker trained by (second- or first-order) MAML.

  `train_step`: adapt the Meta Block per task on the support set with
  `inner_steps` vectorised gradient steps, then update θm (through the inner
  loop; nested `GradientTape`) and θg on the adapted model's query loss.

  Example:

  ```python
  model = LiMAMLModel(MetaBlock(embedding_dim=16), GlobalBlock(num_items=500),
                      inner_steps=2, inner_lr=0.5)
  model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
  model.fit(tasks.dataset(batch_size=64), epochs=5)
  embeddings = model.adapt(task_batch)   # [T, 16]
  ```

  Besides loss and AUC, `train_step` reports what the inner loop does
  (running means over the epoch, so Keras callbacks such as TensorBoard log
  them per epoch): `support_loss_before` and `support_loss_after` (mean
  support loss over tasks with support, with θm and with the adapted fast
  weights), `adaptation_gain` (their difference), `query_loss` (the adapted
  model's, the outer loss), and with Meta-SGD `inner_lr_<i>`, the mean learned
  inner learning rate of each adaptable Meta Block weight.

  Args:
    *args: `PersonalizedRanker`'s.
    unadapted_loss_weight: w >= 0; w times the query loss of the un-adapted
      model (θm, no inner step; the Meta Block still reads the support
      summary) is added to the outer loss, so the meta-learnt prior — and the
      member-ID rows with `num_members` — must score a member well by
      themselves, as the ID-embedding model's rows do. 0: off (MAML's
      outer loss only).
    new_member_loss_weight: w >= 0; w times the query loss of each task
      scored as a new member (no support, unknown member id: θm's no-support
      output and ID row 0, `task_batch.as_new_members`) is added to the outer
      loss, so the path that scores members with no history is trained as
      such. 0: off.
    adapt_offset_only: the inner loop moves only the meta embedding's
      member-level logit offset (`GlobalBlock(meta_offset=True)`, needed):
      the Meta Block's output unit of that dimension (its last kernel column
      and bias), so adaptation fits a member's level from the support and
      leaves the ordering dimensions to the meta-learnt prior, the Meta
      Block's read of the support and the ID row. False: every Meta Block
      weight adapts.
    **kwargs: `PersonalizedRanker`'s.
  """

  def __init__(self, *args, unadapted_loss_weight: float = 0.0,
               new_member_loss_weight: float = 0.0, adapt_offset_only: bool = False,
               **kwargs):
    super().__init__(*args, **kwargs)
    if not isinstance(adapt_offset_only, (bool, np.bool_)):
      raise ValueError(f"`adapt_offset_only` must be True or False, got {adapt_offset_only!r}.")
    if adapt_offset_only and not self.global_block.get_config()["meta_offset"]:
      raise ValueError("`adapt_offset_only` needs the member-level offset "
                       "(GlobalBlock(meta_offset=True)): it is what the inner loop moves.")
    self.adapt_offset_only = bool(adapt_offset_only)
    for name, weight in (("unadapted_loss_weight", unadapted_loss_weight),
                         ("new_member_loss_weight", new_member_loss_weight)):
      if isinstance(weight, bool) or not (np.isfinite(weight) and weight >= 0):
        raise ValueError(f"`{name}` must be a finite number >= 0, got {weight!r}.")
    self.unadapted_loss_weight = float(unadapted_loss_weight)
    self.new_member_loss_weight = float(new_member_loss_weight)
    self._adaptation_trackers = {name: tf.keras.metrics.Mean(name=name) for name in (
        "support_loss_before", "support_loss_after", "adaptation_gain", "query_loss")}

  @property
  def metrics(self):
    return super().metrics + list(self._adaptation_trackers.values())

  def _adaptable_part(self, gradients):
    """With `adapt_offset_only`, zero but the offset unit's (last output column) gradients."""
    if not self.adapt_offset_only:
      return gradients
    *hidden, kernel, bias = gradients
    offset_only = tf.one_hot(bias.shape[-1] - 1, bias.shape[-1])  # [d]: 1 at the offset
    return [tf.zeros_like(g) for g in hidden] + [kernel * offset_only, bias * offset_only]

  def _support_loss(self, batch, fast_weights):
    """Mean support loss over the tasks that have support (this replica's share, `global_mean`)."""
    embeddings = self._member_embedding(batch, fast_weights)
    _, _, _, losses, counts = self._side_losses(batch, F.SUPPORT, embeddings)
    has_support = tf.cast(counts > 0, tf.float32)
    return losses_lib.global_mean(tf.reduce_sum(losses * has_support), tf.reduce_sum(has_support))

  def _adaptation_results(self, batch, fast, query_loss):
    """Updates the inner-loop trackers (class docstring); returns their results."""
    # Replicas' shares summed: the global batch's means, as `_update_metrics` reports the loss.
    before = losses_lib.sum_over_replicas(self._support_loss(batch, None))
    after = losses_lib.sum_over_replicas(self._support_loss(batch, [tf.stop_gradient(w) for w in fast]))
    for name, value in (("support_loss_before", before), ("support_loss_after", after),
                        ("adaptation_gain", before - after),
                        ("query_loss", losses_lib.sum_over_replicas(query_loss))):
      self._adaptation_trackers[name].update_state(value)
    results = {name: tracker.result() for name, tracker in self._adaptation_trackers.items()}
    if self._inner_lrs:
      results.update({f"inner_lr_{i}": tf.reduce_mean(lr)
                      for i, lr in enumerate(self._learning_rates())})
    return results

  def train_step(self, data):
    batch = task_batch_lib.sample_support_sizes(self._training_batch(data),
                                                self.train_support_sizes)
    if self.first_order:
      _, gradient_sums = self._inner_loop(batch, self.inner_steps, first_order=True)
    with tf.GradientTape() as tape:
      if self.first_order:
        fast = self._first_order_weights(batch, gradient_sums)
      else:
        fast = self.adapt_weights(batch)
      loss, logits, labels, mask = self._query_loss(batch, fast)
      total = self._objective(loss, logits, labels, mask)
      if self.unadapted_loss_weight:
        total += self.unadapted_loss_weight * self._query_loss(batch, None)[0]
      if self.new_member_loss_weight:
        total += self.new_member_loss_weight * self._query_loss(
            task_batch_lib.as_new_members(batch), None)[0]
    adaptation = self._adaptation_results(batch, fast, loss)  # Before θ moves.
    self._apply(tape, total)
    return {**self._update_metrics(loss, logits, labels, mask), **adaptation}

  def get_config(self):
    return {**super().get_config(), "unadapted_loss_weight": self.unadapted_loss_weight,
            "new_member_loss_weight": self.new_member_loss_weight,
            "adapt_offset_only": self.adapt_offset_only}


@tf.keras.utils.register_keras_serializable(package="LiMAML")
class GlobalModel(PersonalizedRanker):
  """Non-meta baseline trained plainly on every support and query interaction.

  `inner_steps=0` (default) is the global model; with `inner_steps>0` the
  Meta Block is fine-tuned per member on its support set at evaluation and
  in `adapt` — the fine-tuning baseline (no meta-learning at training time).
  With `use_history=True` only query interactions are training targets (the
  support set is the input history; training on it would leak its labels).

  Args:
    fit_support: train on the support interactions too (default). False for
      history tasks (`TaskSettings.task_history > 0`), whose support rows are
      earlier tasks' queries: the query sides then hold every interaction
      once.
  """

  def __init__(self, meta_block, global_block, inner_steps: int = 0, fit_support: bool = True,
               **kwargs):
    super().__init__(meta_block, global_block, inner_steps=inner_steps, **kwargs)
    self.fit_support = bool(fit_support)

  def get_config(self):
    return {**super().get_config(), "fit_support": self.fit_support}

  def train_step(self, data):
    batch = self._training_batch(data)
    with tf.GradientTape() as tape:
      embeddings = self._member_embedding(batch)
      targets = task_batch_lib.SIDES if self.fit_support and not self.use_history else (F.QUERY,)
      sides = [self._side_losses(batch, side, embeddings) for side in targets]
      logits = tf.concat([s[0] for s in sides], axis=1)
      labels = tf.concat([s[1] for s in sides], axis=1)
      mask = tf.concat([s[2] for s in sides], axis=1)
      losses, counts = losses_lib.masked_task_losses(logits, labels, mask)
      # Every real interaction weighs the same, as in ordinary training.
      loss = losses_lib.global_mean(tf.reduce_sum(losses * counts), tf.reduce_sum(counts))
      total = self._objective(loss, logits, labels, mask)
    self._apply(tape, total)
    return self._update_metrics(loss, logits, labels, mask)


@tf.keras.utils.register_keras_serializable(package="LiMAML")
class IdEmbeddingModel(GlobalModel):
  """Wide&deep member-ID baseline: meta embedding + a learnt per-member vector.

  Members outside the vocabulary (id 0 or >= `num_members`) share row 0, so
  unseen members fall back to their features.

  Args:
    num_members: member-id vocabulary size including the unknown id 0.
    id_l2: L2 penalty on the member-ID embedding rows a batch uses (an
      activity regulariser, so its cost does not grow with the table).
  """

  def __init__(self, meta_block, global_block, num_members: int, id_l2: float = 0.0, **kwargs):
    if int(num_members) < 1:
      raise ValueError(f"`num_members` must be >= 1, got {num_members}.")
    super().__init__(meta_block, global_block, num_members=num_members, id_l2=id_l2, **kwargs)
