"""The two blocks of a LiMAML model: the member-side Meta Block and the shared Global Block."""

from typing import Dict, List, Optional, Sequence

import tensorflow as tf
import tensorflow_recommenders as tfrs

from limaml_keras import autograph_rules  # pylint: disable=unused-import  (AutoGraph skips tf_keras)
from limaml_keras import tensor_layout as F


def _check_units(name: str, units: Sequence[int]) -> List[int]:
  units = [int(u) for u in units]
  if any(u <= 0 for u in units):
    raise ValueError(f"`{name}` must hold positive integers, got {units}.")
  return units


@tf.keras.utils.register_keras_serializable(package="LiMAML")
class MetaBlock(tf.keras.layers.Layer):
  """MLP over member-side inputs whose output is the member's meta embedding.

  The block runs in two modes:

  * with its own variables (`fast_weights=None`): `member_features` is
    `[B, Dm]` and the output `[B, embedding_dim]` — the cold-start embedding;
  * with no inputs at all (`[B, 0]`, e.g. a dataset without member
    features and no history): the block reads a constant 1, so its output is
    a learned vector — the meta-learned initial embedding that the inner loop
    adapts. (No matmul ever sees a 0-width operand, which oneDNN rejects.)
  * with externally supplied per-task weights (`fast_weights`, the list that
    `stack_weights(T)` returns and the inner loop updates): every tensor has a
    leading task axis T, `member_features` is `[T, Dm]`, and the layers are
    applied with `einsum`, so T differently-adapted copies of the block run as
    one batched op.

  Example:

  ```python
  block = MetaBlock(hidden_units=[32], embedding_dim=8)
  cold = block(member_features)                      # [T, 8]
  fast = block.stack_weights(tf.shape(member_features)[0])
  adapted = block(member_features, fast_weights=fast)  # identical to `cold`
  ```

  Args:
    hidden_units: sizes of the hidden layers.
    embedding_dim: size d of the meta embedding (the output).
    activation: activation of the hidden layers (the output is linear).
    kernel_initializer: initializer of the kernels.
  """

  def __init__(self,
               hidden_units: Sequence[int] = (64,),
               embedding_dim: int = 16,
               activation: str = "relu",
               kernel_initializer="glorot_uniform",
               **kwargs):
    super().__init__(**kwargs)
    self._hidden_units = _check_units("hidden_units", hidden_units)
    if int(embedding_dim) <= 0:
      raise ValueError(f"`embedding_dim` must be positive, got {embedding_dim}.")
    self._embedding_dim = int(embedding_dim)
    self._activation = tf.keras.activations.get(activation)
    self._kernel_initializer = tf.keras.initializers.get(kernel_initializer)
    self._kernels = []
    self._biases = []

  @property
  def embedding_dim(self) -> int:
    return self._embedding_dim

  def build(self, input_shape):
    fan_in = max(1, int(input_shape[-1]))
    self._kernels, self._biases = [], []
    for i, units in enumerate(self._hidden_units + [self._embedding_dim]):
      self._kernels.append(self.add_weight(
          name=f"kernel_{i}", shape=(fan_in, units),
          initializer=self._fresh_initializer(), trainable=True))
      self._biases.append(self.add_weight(
          name=f"bias_{i}", shape=(units,), initializer="zeros", trainable=True))
      fan_in = units
    super().build(input_shape)

  def _fresh_initializer(self):
    # One instance per kernel: a reused unseeded instance repeats its values.
    return self._kernel_initializer.__class__.from_config(self._kernel_initializer.get_config())

  @property
  def adaptable_weights(self) -> List[tf.Variable]:
    """The variables the inner loop adapts, in fast-weight order [k0, b0, k1, b1, ...]."""
    return [w for pair in zip(self._kernels, self._biases) for w in pair]

  def stack_weights(self, num_tasks) -> List[tf.Tensor]:
    """Returns the block's weights repeated along a new leading task axis.

    Args:
      num_tasks: T, a Python int or scalar tensor.

    Returns:
      One `[T, ...]` tensor per entry of `adaptable_weights`. Gradients flow
      back to the variables, which is what makes the meta-gradient reach θm.
    """
    return [tf.repeat(w[tf.newaxis], num_tasks, axis=0) for w in self.adaptable_weights]

  def call(self, member_features, fast_weights: Optional[List[tf.Tensor]] = None):
    x = tf.convert_to_tensor(member_features, tf.float32)
    if x.shape[-1] == 0:
      x = tf.ones(tf.concat([tf.shape(x)[:-1], [1]], axis=0))
    weights = self.adaptable_weights if fast_weights is None else list(fast_weights)
    if len(weights) != len(self.adaptable_weights):
      raise ValueError(f"MetaBlock expects {len(self.adaptable_weights)} fast weights "
                       f"(kernel and bias per layer), got {len(weights)}.")
    last = len(weights) // 2 - 1
    for i in range(last + 1):
      kernel, bias = weights[2 * i], weights[2 * i + 1]
      if fast_weights is None:
        x = tf.matmul(x, kernel) + bias
      else:
        x = tf.einsum("ti,tio->to", x, kernel) + bias
      if i < last:
        x = self._activation(x)
    return x

  def get_config(self):
    config = {
        "hidden_units": self._hidden_units,
        "embedding_dim": self._embedding_dim,
        "activation": tf.keras.activations.serialize(self._activation),
        "kernel_initializer": tf.keras.initializers.serialize(self._kernel_initializer),
    }
    return {**super().get_config(), **config}


@tf.keras.utils.register_keras_serializable(package="LiMAML")
class GlobalBlock(tf.keras.layers.Layer):
  """The shared ranker: (meta embedding, item, context, member) -> logit.

  The default is a DCN-v2 tower: concatenated inputs, `num_cross_layers`
  TFRS `Cross` layers, then an MLP and a linear output unit.

  Inputs: a dict with `meta_embedding` `[N, d]`, `item_id` int `[N]`
  (0 = unknown), `item_features` `[N, Di]`, `context_features` `[N, Dc]` and
  `member_features` `[N, Dm]`. Output: logits `[N]`.

  Args:
    num_items: size of the item-id vocabulary including the unknown id 0; 0
      disables the item-id embedding (items are then known by features only).
    item_embedding_dim: size of the item-id embedding.
    num_cross_layers: number of DCN-v2 cross layers (0 = plain MLP).
    cross_projection_dim: low-rank projection of the cross layers (None = full).
    hidden_units: MLP sizes after the cross layers.
    activation: MLP activation.
    use_member_features: also feed the raw member features to the ranker.
    meta_item_interaction: add a bilinear term `(W e)·v` to the logit, where e
      is the meta embedding and v the item representation (item-id embedding
      and item features, concatenated), so the meta embedding re-orders items
      directly instead of acting mostly as a member-level offset. When the
      inputs hold `meta_evidence` (`[N, d]`, `PersonalizedRanker`'s
      `bilinear_evidence`), the term reads it instead of the meta embedding.
    meta_in_tower: feed the meta embedding to the DCN/MLP tower. False (needs
      `meta_item_interaction`): the meta embedding reaches the logit only
      through the bilinear term, so the tower is a member-independent item
      ranker and personalisation is a dot product with the item
      representation (matrix-factorisation style).
    meta_offset: the meta embedding's last dimension is a member-level logit
      offset: it is added to the logit as is, and the tower and the bilinear
      term read only the other d - 1 dimensions. Adaptation can then fit a
      member's positive rate on one dimension without moving the ones that
      order their items. Needs a meta embedding of at least 2 dimensions.
    evidence_in_tower: when the inputs hold `meta_evidence`, the tower reads
      it too, in place of the meta embedding (whose `meta_offset` dimension
      still sets the level). A member with no evidence (no support, unknown
      id: `PersonalizedRanker(bilinear_evidence=True)`) is then ordered from
      member features alone, as the global model orders them. Needs
      `meta_in_tower`.
  """

  def __init__(self,
               num_items: int = 0,
               item_embedding_dim: int = 16,
               num_cross_layers: int = 1,
               cross_projection_dim: Optional[int] = None,
               hidden_units: Sequence[int] = (64, 32),
               activation: str = "relu",
               use_member_features: bool = True,
               meta_item_interaction: bool = False,
               meta_in_tower: bool = True,
               meta_offset: bool = False,
               evidence_in_tower: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    if not meta_in_tower and not meta_item_interaction:
      raise ValueError("`meta_in_tower=False` needs `meta_item_interaction=True`: otherwise the "
                       "meta embedding would not reach the logit at all.")
    if evidence_in_tower and not meta_in_tower:
      raise ValueError("`evidence_in_tower=True` needs `meta_in_tower=True`: it chooses what the "
                       "tower reads.")
    self._evidence_in_tower = bool(evidence_in_tower)
    if int(num_items) < 0:
      raise ValueError(f"`num_items` must be >= 0, got {num_items}.")
    if int(num_cross_layers) < 0:
      raise ValueError(f"`num_cross_layers` must be >= 0, got {num_cross_layers}.")
    self._num_items = int(num_items)
    self._item_embedding_dim = int(item_embedding_dim)
    self._num_cross_layers = int(num_cross_layers)
    self._cross_projection_dim = cross_projection_dim
    self._hidden_units = _check_units("hidden_units", hidden_units)
    self._activation = activation
    self._use_member_features = bool(use_member_features)
    self._item_embedding = None
    if self._num_items:
      self._item_embedding = tf.keras.layers.Embedding(
          self._num_items, self._item_embedding_dim, name="item_embedding")
    self._crosses = [
        tfrs.layers.dcn.Cross(projection_dim=cross_projection_dim, name=f"cross_{i}")
        for i in range(self._num_cross_layers)]
    self._dense = [tf.keras.layers.Dense(u, activation=activation, name=f"dense_{i}")
                   for i, u in enumerate(self._hidden_units)]
    self._logit = tf.keras.layers.Dense(1, name="logit")
    self._meta_item_interaction = bool(meta_item_interaction)
    self._meta_in_tower = bool(meta_in_tower)
    self._meta_offset = bool(meta_offset)
    self._meta_projection = None  # built in `build`: its width is the item representation's

  @property
  def num_items(self) -> int:
    return self._num_items

  @property
  def item_embedding(self) -> Optional[tf.keras.layers.Embedding]:
    """The item-id embedding layer (None when `num_items` is 0)."""
    return self._item_embedding

  def build(self, input_shape):
    meta_dim = int(input_shape[F.META_EMBEDDING][-1])
    if self._meta_offset and meta_dim < 2:
      raise ValueError(
          f"`meta_offset` needs a meta embedding of at least 2 dimensions, got {meta_dim}.")
    if self._meta_item_interaction:
      width = int(input_shape[F.ITEM_FEATURES][-1])
      width += self._item_embedding_dim if self._item_embedding is not None else 0
      if width == 0:
        raise ValueError("`meta_item_interaction` needs an item representation: item features "
                         "or an item-id embedding (num_items > 0).")
      self._meta_projection = tf.keras.layers.Dense(
          width, use_bias=False, kernel_initializer="zeros", name="meta_item_projection")
      self._meta_projection.build(tf.TensorShape([None, meta_dim - int(self._meta_offset)]))
    super().build(input_shape)

  def lookup_items(self, item_id) -> tf.Tensor:
    """Item-id embeddings of `item_id` (any shape); out-of-vocabulary ids use row 0."""
    item_id = tf.cast(item_id, tf.int64)
    # Ids beyond the vocabulary (e.g. from a newer catalogue) share the unknown slot.
    item_id = tf.where((item_id >= 0) & (item_id < self._num_items), item_id, 0)
    return self._item_embedding(item_id)

  def call(self, inputs: Dict[str, tf.Tensor]):
    meta = tf.cast(inputs[F.META_EMBEDDING], tf.float32)
    offset = meta[:, -1] if self._meta_offset else None
    tower_reads = (inputs[F.META_EVIDENCE]
                   if self._evidence_in_tower and F.META_EVIDENCE in inputs else meta)
    parts = [self._ordering_dims(tower_reads),
             tf.cast(inputs[F.ITEM_FEATURES], tf.float32),
             tf.cast(inputs[F.CONTEXT_FEATURES], tf.float32)]
    if self._use_member_features:
      parts.append(tf.cast(inputs[F.MEMBER_FEATURES], tf.float32))
    item_parts = [parts[1]]
    if self._item_embedding is not None:
      item_parts.append(self.lookup_items(inputs[F.ITEM_ID]))
      parts.append(item_parts[-1])
    x0 = tf.concat(parts if self._meta_in_tower else parts[1:], axis=-1)
    x = x0
    for cross in self._crosses:
      x = cross(x0, x)
    for dense in self._dense:
      x = dense(x)
    logit = tf.squeeze(self._logit(x), axis=-1)
    if self._meta_projection is not None:
      item = tf.concat(item_parts, axis=-1)
      reads = (self._ordering_dims(inputs[F.META_EVIDENCE]) if F.META_EVIDENCE in inputs
               else parts[0])
      logit += tf.reduce_sum(self._meta_projection(reads) * item, axis=-1)
    if offset is not None:
      logit += offset
    return logit

  def _ordering_dims(self, embedding) -> tf.Tensor:
    """The dimensions of `embedding` `[N, d]` that order items (all but the `meta_offset` one)."""
    embedding = tf.cast(embedding, tf.float32)
    return embedding[:, :-1] if self._meta_offset else embedding

  def get_config(self):
    config = {
        "num_items": self._num_items,
        "item_embedding_dim": self._item_embedding_dim,
        "num_cross_layers": self._num_cross_layers,
        "cross_projection_dim": self._cross_projection_dim,
        "hidden_units": self._hidden_units,
        "activation": self._activation,
        "use_member_features": self._use_member_features,
        "meta_item_interaction": self._meta_item_interaction,
        "meta_in_tower": self._meta_in_tower,
        "meta_offset": self._meta_offset,
        "evidence_in_tower": self._evidence_in_tower,
    }
    return {**super().get_config(), **config}
