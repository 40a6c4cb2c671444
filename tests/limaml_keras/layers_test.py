"""MetaBlock and GlobalBlock: hand-checked values, fast-weight mode, config round trips."""

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import tensor_layout as F
from limaml_keras.layers import GlobalBlock, MetaBlock


def test_meta_block_computes_a_linear_layer_by_hand():
  block = MetaBlock(hidden_units=[], embedding_dim=2)
  block.build((None, 3))
  kernel, bias = block.adaptable_weights
  kernel.assign([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
  bias.assign([0.5, -0.5])
  out = block(np.array([[1.0, 2.0, 3.0]], np.float32))
  np.testing.assert_allclose(out.numpy(), [[4.5, 6.5]])


def test_stacked_weights_reproduce_the_block():
  block = MetaBlock(hidden_units=[5, 4], embedding_dim=3)
  x = np.random.default_rng(0).normal(size=(6, 7)).astype(np.float32)
  plain = block(x)
  stacked = block(x, fast_weights=block.stack_weights(6))
  # einsum and matmul sum in different orders: float32 rounding (~1e-7) on values near 0.
  np.testing.assert_allclose(stacked.numpy(), plain.numpy(), rtol=1e-6, atol=1e-6)


def test_fast_weights_apply_per_task():
  block = MetaBlock(hidden_units=[4], embedding_dim=2)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(3, 5)).astype(np.float32)
  block(x)
  fast = [w + rng.normal(size=w.shape).astype(np.float32) for w in block.stack_weights(3)]
  batched = block(x, fast_weights=fast).numpy()
  for t in range(3):
    hidden = np.maximum(x[t] @ fast[0][t].numpy() + fast[1][t].numpy(), 0)
    np.testing.assert_allclose(batched[t], hidden @ fast[2][t].numpy() + fast[3][t].numpy(),
                               rtol=1e-5, atol=1e-6)


def test_meta_block_rejects_a_wrong_number_of_fast_weights():
  block = MetaBlock(hidden_units=[4], embedding_dim=2)
  x = np.zeros((2, 3), np.float32)
  block(x)
  with pytest.raises(ValueError, match="expects 4 fast weights"):
    block(x, fast_weights=block.stack_weights(2)[:2])


def test_meta_block_kernels_are_initialised_independently():
  block = MetaBlock(hidden_units=[4, 4], embedding_dim=4)
  block.build((None, 4))
  k0, _, k1, _, k2, _ = [w.numpy() for w in block.adaptable_weights]
  assert not np.allclose(k1, k2)


@pytest.mark.parametrize("layer", [
    MetaBlock(hidden_units=[8, 4], embedding_dim=3, activation="tanh"),
    GlobalBlock(num_items=5, item_embedding_dim=2, num_cross_layers=2, cross_projection_dim=2,
                hidden_units=[6], use_member_features=False),
    GlobalBlock(num_items=5, meta_item_interaction=True),
    GlobalBlock(num_items=5, meta_item_interaction=True, meta_in_tower=False),
    GlobalBlock(num_items=5, meta_item_interaction=True, meta_offset=True),
    GlobalBlock(num_items=5, meta_item_interaction=True, meta_offset=True, evidence_in_tower=True),
])
def test_config_round_trip(layer):
  clone = type(layer).from_config(layer.get_config())
  assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("kwargs,match", [
    ({"hidden_units": [0]}, "hidden_units"),
    ({"embedding_dim": 0}, "embedding_dim"),
])
def test_meta_block_bad_arguments_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    MetaBlock(**kwargs)


@pytest.mark.parametrize("kwargs,match", [
    ({"num_items": -1}, "num_items"),
    ({"num_cross_layers": -2}, "num_cross_layers"),
    ({"hidden_units": [4, -1]}, "hidden_units"),
    ({"meta_in_tower": False}, "meta_item_interaction"),
    ({"meta_item_interaction": True, "meta_in_tower": False, "evidence_in_tower": True},
     "evidence_in_tower=True` needs `meta_in_tower=True"),
])
def test_global_block_bad_arguments_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    GlobalBlock(**kwargs)


def interactions(n=4, item_ids=(1, 2, 3, 4)):
  rng = np.random.default_rng(0)
  return {F.META_EMBEDDING: rng.normal(size=(n, 3)).astype(np.float32),
          F.ITEM_ID: np.array(item_ids, np.int64),
          F.ITEM_FEATURES: rng.normal(size=(n, 2)).astype(np.float32),
          F.CONTEXT_FEATURES: np.zeros((n, 1), np.float32),
          F.MEMBER_FEATURES: rng.normal(size=(n, 2)).astype(np.float32)}


@pytest.mark.parametrize("num_cross_layers", [0, 1, 3])
def test_global_block_scores_one_logit_per_interaction(num_cross_layers):
  block = GlobalBlock(num_items=5, num_cross_layers=num_cross_layers, hidden_units=[4])
  assert block(interactions()).shape == (4,)


def test_unknown_item_ids_share_the_unknown_slot():
  block = GlobalBlock(num_items=5, hidden_units=[4])
  inputs = interactions(item_ids=(0, 7, -3, 0))
  logits = block(inputs).numpy()
  same = dict(inputs, **{F.ITEM_ID: np.zeros(4, np.int64)})
  np.testing.assert_allclose(logits, block(same).numpy(), rtol=1e-6)


def test_meta_item_interaction_is_a_bilinear_term_that_reorders_items():
  block = GlobalBlock(num_items=5, item_embedding_dim=2, hidden_units=[4],
                      meta_item_interaction=True)
  inputs = interactions()
  before = block(inputs).numpy()   # the projection starts at zero: no change at first
  plain = GlobalBlock(num_items=5, item_embedding_dim=2, hidden_units=[4])
  plain(inputs)
  plain.set_weights([w for w in block.get_weights() if w.shape != (3, 4)])
  np.testing.assert_allclose(before, plain(inputs).numpy(), rtol=1e-6)
  projection = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
  block._meta_projection.kernel.assign(projection)
  item = np.concatenate([inputs[F.ITEM_FEATURES],
                         block.item_embedding(inputs[F.ITEM_ID]).numpy()], axis=1)
  expected = before + np.sum((inputs[F.META_EMBEDDING] @ projection) * item, axis=1)
  np.testing.assert_allclose(block(inputs).numpy(), expected, rtol=1e-5)


def test_meta_embedding_outside_the_tower_reaches_the_logit_only_through_the_bilinear_term():
  block = GlobalBlock(num_items=5, item_embedding_dim=2, hidden_units=[4],
                      meta_item_interaction=True, meta_in_tower=False)
  inputs = interactions()
  block(inputs)
  # With the projection at zero the logit is member-independent: any meta embedding scores alike.
  other = dict(inputs, **{F.META_EMBEDDING: inputs[F.META_EMBEDDING] + 5.0})
  np.testing.assert_allclose(block(other).numpy(), block(inputs).numpy(), rtol=1e-6)
  projection = np.random.default_rng(2).normal(size=(3, 4)).astype(np.float32)
  block._meta_projection.kernel.assign(projection)
  item = np.concatenate([inputs[F.ITEM_FEATURES],
                         block.item_embedding(inputs[F.ITEM_ID]).numpy()], axis=1)
  shift = np.sum((other[F.META_EMBEDDING] - inputs[F.META_EMBEDDING]) @ projection * item, axis=1)
  np.testing.assert_allclose(block(other).numpy() - block(inputs).numpy(), shift,
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("meta_offset", [False, True])
def test_given_meta_evidence_the_bilinear_term_reads_it_and_the_tower_reads_the_embedding(
    meta_offset):
  block = GlobalBlock(num_items=5, item_embedding_dim=2, hidden_units=[4],
                      meta_item_interaction=True, meta_offset=meta_offset)
  inputs = interactions()
  block(inputs)
  width = 3 - int(meta_offset)
  projection = np.random.default_rng(4).normal(size=(width, 4)).astype(np.float32)
  block._meta_projection.kernel.assign(projection)
  # Evidence equal to the embedding: the same logits as without it.
  same = dict(inputs, **{F.META_EVIDENCE: inputs[F.META_EMBEDDING]})
  np.testing.assert_allclose(block(same).numpy(), block(inputs).numpy(), rtol=1e-6)
  # Any other evidence changes only the bilinear term, by (W Δ)·v on the dimensions it reads.
  evidence = np.random.default_rng(5).normal(size=(4, 3)).astype(np.float32)
  item = np.concatenate([inputs[F.ITEM_FEATURES],
                         block.item_embedding(inputs[F.ITEM_ID]).numpy()], axis=1)
  delta = (evidence - inputs[F.META_EMBEDDING])[:, :width]
  moved = block(dict(inputs, **{F.META_EVIDENCE: evidence})).numpy()
  np.testing.assert_allclose(moved - block(inputs).numpy(),
                             np.sum((delta @ projection) * item, axis=1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("meta_offset", [False, True])
def test_evidence_in_tower_leaves_the_meta_embedding_only_its_offset(meta_offset):
  block = GlobalBlock(num_items=5, item_embedding_dim=2, hidden_units=[4],
                      meta_item_interaction=True, meta_offset=meta_offset, evidence_in_tower=True)
  inputs = interactions()
  evidence = np.random.default_rng(6).normal(size=(4, 3)).astype(np.float32)
  with_evidence = dict(inputs, **{F.META_EVIDENCE: evidence})
  block(with_evidence)
  block._meta_projection.kernel.assign(
      np.random.default_rng(7).normal(size=block._meta_projection.kernel.shape).astype(np.float32))
  # Given the evidence, the meta embedding's ordering dimensions reach nothing; the offset stays.
  other = inputs[F.META_EMBEDDING] + np.float32(3.0)
  moved = block(dict(with_evidence, **{F.META_EMBEDDING: other})).numpy()
  np.testing.assert_allclose(moved - block(with_evidence).numpy(), 3.0 if meta_offset else 0.0,
                             rtol=1e-5, atol=1e-5)
  # Evidence equal to the embedding: the plain block's logits; without evidence the tower reads
  # the embedding as before.
  same = block(dict(inputs, **{F.META_EVIDENCE: inputs[F.META_EMBEDDING]})).numpy()
  np.testing.assert_allclose(same, block(inputs).numpy(), rtol=1e-6)
  assert not np.allclose(block(with_evidence).numpy(), block(inputs).numpy())


def test_meta_item_interaction_needs_an_item_representation():
  block = GlobalBlock(num_items=0, meta_item_interaction=True)
  inputs = dict(interactions(), **{F.ITEM_FEATURES: np.zeros((4, 0), np.float32)})
  with pytest.raises(ValueError, match="item representation"):
    block(inputs)


def test_meta_offset_is_the_last_meta_dimension_added_to_the_logit():
  block = GlobalBlock(num_items=5, item_embedding_dim=2, hidden_units=[4],
                      meta_item_interaction=True, meta_offset=True)
  inputs = interactions()
  block(inputs)
  block._meta_projection.kernel.assign(np.random.default_rng(3).normal(size=(2, 4)))
  assert block._meta_projection.kernel.shape == (2, 4)  # the bilinear term reads d - 1 dims
  base = block(inputs).numpy()
  shift = np.array([-1.0, 0.0, 0.5, 2.0], np.float32)
  moved = inputs[F.META_EMBEDDING].copy()
  moved[:, -1] += shift
  # The offset dimension moves each logit by exactly its change: the tower never reads it.
  np.testing.assert_allclose(block(dict(inputs, **{F.META_EMBEDDING: moved})).numpy() - base,
                             shift, rtol=1e-5, atol=1e-5)
  other = inputs[F.META_EMBEDDING].copy()
  other[:, 0] += 1.0
  assert not np.allclose(block(dict(inputs, **{F.META_EMBEDDING: other})).numpy(), base)


def test_meta_offset_needs_two_meta_dimensions():
  block = GlobalBlock(num_items=5, meta_offset=True)
  inputs = dict(interactions(), **{F.META_EMBEDDING: np.zeros((4, 1), np.float32)})
  with pytest.raises(ValueError, match="meta_offset.*at least 2 dimensions, got 1"):
    block(inputs)
