"""Invariants of the vectorised MAML inner/outer loop (learn2learn-style) and Keras behaviour."""

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import tensor_layout as F
from limaml_keras.layers import GlobalBlock, MetaBlock
from limaml_keras.losses import ranking_loss
from limaml_keras.model import GlobalModel, IdEmbeddingModel, LiMAMLModel
from limaml_keras.testing import pad_task_batch, random_task_batch


def make_model(cls=LiMAMLModel, seed=0, activation="tanh", block_kwargs=None, **kwargs):
  tf.keras.utils.set_random_seed(seed)
  model = cls(MetaBlock(hidden_units=[6], embedding_dim=4, activation=activation),
              GlobalBlock(num_items=10, item_embedding_dim=3, hidden_units=[8],
                          activation=activation, **(block_kwargs or {})),
              **kwargs)
  model.compile(optimizer=tf.keras.optimizers.SGD(0.1))
  return model


def as_tensors(batch):
  return {k: tf.convert_to_tensor(v) for k, v in batch.items()}


def query_loss(model, batch, **adapt_kwargs):
  fast = model.adapt_weights(batch, **adapt_kwargs)
  loss, _, _, _ = model._query_loss(batch, fast)
  return loss


def meta_gradients(model, batch, **adapt_kwargs):
  with tf.GradientTape() as tape:
    loss = query_loss(model, batch, **adapt_kwargs)
  return loss, tape.gradient(loss, model.meta_block.adaptable_weights)


def support_losses(model, batch, fast):
  embeddings = model._member_embedding(batch, fast)
  return model._side_losses(batch, F.SUPPORT, embeddings)[3]


def task_slice(batch, t):
  return {k: v[t:t + 1] for k, v in batch.items()}


@pytest.fixture
def batch():
  return as_tensors(random_task_batch(num_tasks=5, support=6, query=4, seed=1))


def build(model, batch):
  model._build_from_task_batch(batch)
  return model


def test_adaptation_lowers_every_tasks_support_loss(batch):
  model = build(make_model(inner_steps=3, inner_lr=0.3), batch)
  before = support_losses(model, batch, model.meta_block.stack_weights(5))
  after = support_losses(model, batch, model.adapt_weights(batch))
  assert np.all(after.numpy() < before.numpy())


def test_vectorised_inner_loop_equals_per_task_loop(batch):
  model = build(make_model(inner_steps=2, inner_lr=0.5), batch)
  fast = model.adapt_weights(batch)
  for t in range(5):
    one = model.adapt_weights(task_slice(batch, t))
    for vectorised, reference in zip(fast, one):
      np.testing.assert_allclose(vectorised[t].numpy(), reference[0].numpy(), rtol=1e-5, atol=1e-6)


def test_vectorised_meta_gradient_equals_per_task_loop(batch):
  model = build(make_model(inner_steps=2, inner_lr=0.5), batch)
  loss, grads = meta_gradients(model, batch)
  reference_loss, reference_grads = 0.0, [tf.zeros_like(g) for g in grads]
  for t in range(5):
    one_loss, one_grads = meta_gradients(model, task_slice(batch, t))
    reference_loss += one_loss / 5
    reference_grads = [r + g / 5 for r, g in zip(reference_grads, one_grads)]
  np.testing.assert_allclose(loss.numpy(), reference_loss.numpy(), rtol=1e-5)
  for g, r in zip(grads, reference_grads):
    np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-4, atol=1e-6)


def test_second_order_meta_gradient_matches_finite_differences(batch):
  model = build(make_model(inner_steps=2, inner_lr=1.0), batch)
  _, second = meta_gradients(model, batch)
  _, first = meta_gradients(model, batch, first_order=True)
  variables = model.meta_block.adaptable_weights
  rng = np.random.default_rng(0)
  directions = [rng.normal(size=v.shape).astype(np.float32) for v in variables]
  eps = 1e-2

  def loss_at(scale):
    originals = [v.numpy() for v in variables]
    for v, d in zip(variables, directions):
      v.assign_add(scale * d)
    value = float(query_loss(model, batch).numpy())
    for v, o in zip(variables, originals):
      v.assign(o)
    return value

  numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
  analytic_second = sum(float(tf.reduce_sum(g * d)) for g, d in zip(second, directions))
  analytic_first = sum(float(tf.reduce_sum(g * d)) for g, d in zip(first, directions))
  assert abs(analytic_second - numeric) < 2e-3 + 1e-2 * abs(numeric)
  # The check has teeth: first-order is measurably off where second-order is not.
  assert abs(analytic_first - numeric) > 5 * abs(analytic_second - numeric)


def test_first_order_equals_stop_gradient_reference(batch):
  model = build(make_model(inner_steps=2, inner_lr=0.5), batch)
  _, first = meta_gradients(model, batch, first_order=True)
  # FOMAML: the meta-gradient is the query gradient at the adapted weights,
  # summed over tasks, as if the adapted weights were independent variables.
  fast = [tf.Variable(w) for w in model.adapt_weights(batch)]
  with tf.GradientTape() as tape:
    loss, _, _, _ = model._query_loss(batch, list(fast))
  reference = [tf.reduce_sum(g, axis=0) for g in tape.gradient(loss, fast)]
  for g, r in zip(first, reference):
    np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=1e-5, atol=1e-7)


def test_first_order_train_step_weights_equal_the_inner_loop(batch):
  model = build(make_model(inner_steps=3, inner_lr=0.5, learn_inner_lr=True), batch)
  _, sums = model._inner_loop(batch, 3, first_order=True)
  with tf.GradientTape(persistent=True) as tape:
    cheap = model._first_order_weights(batch, sums)
    reference = model.adapt_weights(batch, first_order=True)
    cheap_loss = model._query_loss(batch, cheap)[0]
    reference_loss = model._query_loss(batch, reference)[0]
  for c, r in zip(cheap, reference):
    np.testing.assert_allclose(c.numpy(), r.numpy(), rtol=1e-5, atol=1e-6)
  variables = model.trainable_variables
  for c, r in zip(tape.gradient(cheap_loss, variables), tape.gradient(reference_loss, variables)):
    np.testing.assert_allclose(tf.convert_to_tensor(c).numpy(), tf.convert_to_tensor(r).numpy(),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("first_order", [False, True])
def test_train_step_updates_both_blocks(batch, first_order):
  model = build(make_model(inner_steps=1, first_order=first_order), batch)
  before = {v.name: v.numpy() for v in model.trainable_variables}
  model.train_on_batch(batch)
  meta = {v.name for v in model.meta_block.trainable_variables}
  glob = {v.name for v in model.global_block.trainable_variables}
  changed = {v.name for v in model.trainable_variables
             if not np.array_equal(before[v.name], v.numpy())}
  assert meta <= changed and meta
  # Every Global Block variable except unused item-embedding rows moves.
  assert {n for n in glob if "item_embedding" not in n} <= changed


@pytest.mark.slow
def test_learned_inner_learning_rates_are_trained(batch):
  model = build(make_model(inner_steps=1, learn_inner_lr=True, inner_lr=0.2), batch)
  lrs = model._inner_lrs
  assert [lr.shape for lr in lrs] == [w.shape for w in model.meta_block.adaptable_weights]
  model.train_on_batch(batch)
  assert any(not np.allclose(lr.numpy(), 0.2) for lr in lrs)


@pytest.mark.slow
@pytest.mark.parametrize("first_order", [False, True])
def test_train_step_reports_what_the_inner_loop_does(batch, first_order):
  model = build(make_model(inner_steps=3, inner_lr=0.3, learn_inner_lr=True,
                           first_order=first_order), batch)
  before = float(tf.reduce_mean(support_losses(model, batch, model.meta_block.stack_weights(5))))
  after = float(tf.reduce_mean(support_losses(model, batch, model.adapt_weights(batch))))
  used_lrs = [float(tf.reduce_mean(lr)) for lr in model._inner_lrs]  # The step reports these.
  logs = model.train_on_batch(batch, return_dict=True)
  assert logs["support_loss_before"] == pytest.approx(before, rel=1e-4)
  assert logs["support_loss_after"] == pytest.approx(after, rel=1e-4)
  assert logs["adaptation_gain"] == pytest.approx(before - after, rel=1e-3) and before > after
  assert logs["query_loss"] == pytest.approx(logs["loss"])
  lr_keys = sorted(k for k in logs if k.startswith("inner_lr_"))
  assert len(lr_keys) == len(model.meta_block.adaptable_weights)
  for key, lr in zip(sorted(lr_keys, key=lambda k: int(k.split("_")[-1])), used_lrs):
    assert logs[key] == pytest.approx(lr)
  model.reset_metrics()  # The trackers are epoch means: Keras resets them.
  assert all(float(t.count) == 0 for t in model._adaptation_trackers.values())


NEW_OPTIONS = [
    {},
    {"support_items": "shared", "block_kwargs": {"meta_item_interaction": True}},
    {"support_items": "own", "support_item_dim": 2, "use_history": True},
]


@pytest.mark.slow
@pytest.mark.parametrize("options", NEW_OPTIONS)
@pytest.mark.parametrize("fill", [0.0, 1e6])
def test_padding_has_exactly_zero_effect(batch, fill, options):
  model = build(make_model(inner_steps=2, inner_lr=0.5, **options), batch)
  padded = as_tensors(pad_task_batch({k: v.numpy() for k, v in batch.items()}, 3, fill=fill))
  loss, grads = meta_gradients(model, batch)
  padded_loss, padded_grads = meta_gradients(model, padded)
  np.testing.assert_allclose(padded_loss.numpy(), loss.numpy(), rtol=1e-6)
  for g, p in zip(grads, padded_grads):
    np.testing.assert_allclose(p.numpy(), g.numpy(), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(model.adapt(padded), model.adapt(batch), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("options", NEW_OPTIONS)
def test_task_without_support_gets_the_cold_start_embedding(batch, options):
  model = build(make_model(inner_steps=3, inner_lr=0.5, **options), batch)
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  numpy_batch["support_mask"][2] = 0.0
  adapted = model.adapt(numpy_batch)
  cold = model.embed(numpy_batch["member_features"]).numpy()
  np.testing.assert_allclose(adapted[2], cold[2], rtol=1e-6)
  assert not np.allclose(adapted[0], cold[0])


@pytest.mark.slow
def test_adapt_needs_only_support_keys(batch):
  model = build(make_model(inner_steps=1), batch)
  support_only = {k: v for k, v in batch.items() if not k.startswith("query_")}
  np.testing.assert_allclose(model.adapt(support_only), model.adapt(batch), rtol=1e-6)


@pytest.mark.slow
def test_adapt_embeddings_takes_support_only_batches_in_a_graph(batch):
  model = build(make_model(inner_steps=2), batch)
  support_only = {k: v for k, v in batch.items() if not k.startswith("query_")}
  signature = {k: tf.TensorSpec([None] + v.shape[1:], v.dtype) for k, v in support_only.items()}
  signature.update({k: tf.TensorSpec([None, None] + v.shape[2:], v.dtype)
                    for k, v in support_only.items() if k.startswith("support_")})
  adapt = tf.function(model.adapt_embeddings, input_signature=[signature])
  np.testing.assert_allclose(adapt(support_only).numpy(), model.adapt(batch), rtol=1e-6)


def test_call_scores_interactions_with_and_without_embedding(batch):
  model = build(make_model(inner_steps=1), batch)
  n = 7
  rng = np.random.default_rng(0)
  inputs = {F.MEMBER_FEATURES: rng.normal(size=(n, 3)).astype(np.float32),
            F.ITEM_ID: rng.integers(0, 10, n), F.ITEM_FEATURES: rng.normal(size=(n, 4)).astype(
                np.float32), F.CONTEXT_FEATURES: np.zeros((n, 2), np.float32)}
  cold = model(inputs).numpy()
  explicit = model({**inputs, F.META_EMBEDDING: model.embed(inputs[F.MEMBER_FEATURES])}).numpy()
  assert cold.shape == (n,) and np.all((cold > 0) & (cold < 1))
  np.testing.assert_allclose(cold, explicit, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("cls,kwargs", [
    (LiMAMLModel, {"inner_steps": 2, "learn_inner_lr": True}),
    (LiMAMLModel, {"inner_steps": 1, "use_history": True}),
    (LiMAMLModel, {"inner_steps": 1, "support_items": "shared", "train_support_sizes": [0, 2],
                   "learn_inner_lr": True, "max_inner_lr": 0.3, "support_count_cap": 2,
                   "block_kwargs": {"meta_item_interaction": True}}),
    (LiMAMLModel, {"inner_steps": 1, "support_items": "own", "support_item_dim": 2}),
    (GlobalModel, {"inner_steps": 1}),
    (GlobalModel, {"fit_support": False}),
    (IdEmbeddingModel, {"num_members": 8, "id_l2": 1e-3}),
    (LiMAMLModel, {"inner_steps": 1, "num_members": 8, "id_l2": 1e-3, "member_id_dropout": 0.5}),
    (LiMAMLModel, {"inner_steps": 1, "ranking_loss_weight": 0.5, "inner_ranking_loss_weight": 1.0,
                   "inner_pseudo_count": 3.0}),
    (GlobalModel, {"ranking_loss_weight": 0.5}),
    (LiMAMLModel, {"inner_steps": 1, "num_members": 8, "unadapted_loss_weight": 0.5}),
    (LiMAMLModel, {"inner_steps": 1, "num_members": 8, "new_member_loss_weight": 0.5}),
    (LiMAMLModel, {"inner_steps": 1, "use_history": True, "support_gate": True}),
    (LiMAMLModel, {"inner_steps": 1, "use_history": True, "support_gate": True,
                   "support_gate_count": 5.0}),
    (LiMAMLModel, {"inner_steps": 1, "num_members": 8,
                   "block_kwargs": {"meta_item_interaction": True, "meta_offset": True}}),
    (LiMAMLModel, {"inner_steps": 1, "num_members": 8, "support_gate": True,
                   "bilinear_evidence": True,
                   "block_kwargs": {"meta_item_interaction": True, "meta_offset": True,
                                    "evidence_in_tower": True}}),
    (LiMAMLModel, {"inner_steps": 2, "adapt_offset_only": True,
                   "block_kwargs": {"meta_offset": True}}),
])
def test_save_and_load_round_trip(tmp_path, batch, cls, kwargs):
  """One trained model, saved as a SavedModel and as a `.keras` file; both load back equal."""
  model = make_model(cls, **kwargs)
  model.fit(tf.data.Dataset.from_tensors(batch).repeat(2), verbose=0)
  inputs = _interactions_of_first_query(batch, batch[F.MEMBER_ID])
  adapted, scores = model.adapt(batch), model(inputs).numpy()
  for suffix in ("", ".keras"):
    path = str(tmp_path / f"model{suffix}")
    model.save(path)
    loaded = tf.keras.models.load_model(path)
    assert type(loaded) is cls, suffix
    assert without_build_config(loaded.get_config()) == without_build_config(model.get_config())
    np.testing.assert_allclose(loaded.adapt(batch), adapted, rtol=1e-6, atol=1e-7, err_msg=suffix)
    np.testing.assert_allclose(loaded(inputs).numpy(), scores, rtol=1e-6, err_msg=suffix)


def without_build_config(config):
  if isinstance(config, dict):
    return {k: without_build_config(v) for k, v in config.items() if k != "build_config"}
  return config


@pytest.mark.slow
def test_evaluate_reports_query_loss_and_auc(batch):
  model = make_model(inner_steps=1)
  results = model.evaluate(tf.data.Dataset.from_tensors(batch), verbose=0, return_dict=True)
  assert set(results) >= {"loss", "auc", "regularization_loss", "total_loss"}
  assert 0.0 <= results["auc"] <= 1.0 and results["loss"] > 0


def test_id_embedding_model_sends_unknown_members_to_the_shared_row(batch):
  model = build(make_model(IdEmbeddingModel, num_members=3), batch)
  model.member_embedding.embeddings.assign(np.arange(12, dtype=np.float32).reshape(3, 4))
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  numpy_batch[F.MEMBER_ID] = np.array([0, 1, 2, 3, 99])
  embeddings = model.adapt(numpy_batch) - model.embed(numpy_batch[F.MEMBER_FEATURES]).numpy()
  np.testing.assert_allclose(embeddings[[0, 3, 4]], np.zeros((3, 4)) + [0, 1, 2, 3], atol=1e-6)
  np.testing.assert_allclose(embeddings[1], [4, 5, 6, 7], atol=1e-6)


# ------------------------------------------------------------------ bad input
def test_tasks_without_any_interaction_contribute_nothing(batch):
  model = build(make_model(inner_steps=1), batch)
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  loss, grads = meta_gradients(model, as_tensors(numpy_batch))
  extra = {k: np.concatenate([v, v[:1]]) for k, v in numpy_batch.items()}
  extra["support_mask"][-1] = 0.0
  extra["query_mask"][-1] = 0.0
  extra_loss, extra_grads = meta_gradients(model, as_tensors(extra))
  np.testing.assert_allclose(extra_loss.numpy(), loss.numpy(), rtol=1e-6)
  for g, e in zip(grads, extra_grads):
    np.testing.assert_allclose(e.numpy(), g.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_nan_labels_stop_training_with_a_named_error(batch):
  labels = batch["query_label"].numpy()
  labels[0, 0] = np.nan
  batch["query_label"] = tf.constant(labels)
  model = make_model()
  with pytest.raises(tf.errors.InvalidArgumentError, match="query_label contains NaN or Inf"):
    model.fit(tf.data.Dataset.from_tensors(batch), verbose=0)


@pytest.mark.slow
def test_labels_outside_zero_one_are_named(batch):
  batch["support_label"] = batch["support_label"] * 3.0
  model = make_model()
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"support_label must be in \[0, 1\]"):
    model.fit(tf.data.Dataset.from_tensors(batch), verbose=0)


def test_model_refuses_a_batch_with_other_feature_sizes(batch):
  model = build(make_model(), batch)
  other = as_tensors(random_task_batch(num_tasks=2, member_dim=5, seed=3))
  with pytest.raises(ValueError, match="Model was built for"):
    model.adapt(other)


def test_bad_hyperparameters_are_named():
  with pytest.raises(ValueError, match="inner_steps"):
    LiMAMLModel(MetaBlock(), GlobalBlock(), inner_steps=-1)
  with pytest.raises(ValueError, match="inner_lr"):
    LiMAMLModel(MetaBlock(), GlobalBlock(), inner_lr=float("nan"))
  with pytest.raises(ValueError, match="num_members"):
    IdEmbeddingModel(MetaBlock(), GlobalBlock(), num_members=0)


def test_adapt_rejects_non_numeric_input(batch):
  model = build(make_model(), batch)
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  numpy_batch["member_features"] = [["a", "b", "c"]] * 5
  with pytest.raises(ValueError, match="member_features"):
    model.adapt(numpy_batch)


# -------------------------------------------------------------- support history
def test_history_model_cold_start_sees_zero_history(batch):
  model = build(make_model(inner_steps=0, use_history=True), batch)
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  numpy_batch["support_mask"][:] = 0.0
  np.testing.assert_allclose(model.adapt(numpy_batch),
                             model.embed(numpy_batch["member_features"]).numpy(), rtol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("options", [{"use_history": True}, {"fit_support": False}],
                         ids=["history_input", "history_tasks"])
def test_global_model_trains_on_query_targets_only(batch, options):
  model = build(make_model(GlobalModel, **options), batch)
  query_only = float(model._query_loss(batch, None)[0])
  embeddings = model._member_embedding(batch)
  both = float(tf.reduce_mean(tf.stack([model._side_losses(batch, side, embeddings)[3]
                                        for side in ("support", "query")])))
  step = model.train_on_batch(batch, return_dict=True)
  # Support labels enter only as input history: the training loss is the query loss.
  np.testing.assert_allclose(step["loss"], query_only, rtol=1e-5)
  assert abs(both - query_only) > 1e-3


# ------------------------------------------------ support items, support sizes, inner-lr bound
@pytest.mark.slow
def test_meta_block_reads_the_support_items(batch):
  model = build(make_model(inner_steps=0, support_items="shared"), batch)
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  other = dict(numpy_batch, support_item_id=(numpy_batch["support_item_id"] + 1) % 10)
  assert not np.allclose(model.adapt(numpy_batch), model.adapt(other))
  # The item ids reach the Meta Block through the Global Block's table (shared).
  assert model.support_item_embedding is None
  assert model.meta_block.adaptable_weights[0].shape[0] == 3 + 2 * 3 + 2


@pytest.mark.slow
def test_train_step_with_sampled_support_sizes_trains(batch):
  model = build(make_model(inner_steps=1, train_support_sizes=[0, 1, 3]), batch)
  before = [w.numpy().copy() for w in model.trainable_variables]
  model.train_on_batch(batch)
  assert any(not np.allclose(b, w.numpy()) for b, w in zip(before, model.trainable_variables))


def test_learned_inner_learning_rates_are_bounded(batch):
  model = build(make_model(inner_steps=1, inner_lr=0.2, learn_inner_lr=True, max_inner_lr=0.1),
                batch)
  rates = model._learning_rates()
  assert all(float(tf.reduce_max(r)) <= np.float32(0.1) for r in rates)
  model._inner_lrs[0].assign(-tf.ones_like(model._inner_lrs[0]))
  assert float(tf.reduce_min(model._learning_rates()[0])) == 0.0


@pytest.mark.parametrize("kwargs,match", [
    ({"support_items": "bag"}, "support_items"),
    ({"support_item_dim": 0}, "support_item_dim"),
    ({"train_support_sizes": [2, -1]}, "train_support_sizes"),
    ({"max_inner_lr": 0.0}, "max_inner_lr"),
    ({"max_inner_lr": float("inf")}, "max_inner_lr"),
    ({"ranking_loss_weight": -0.1}, "ranking_loss_weight"),
    ({"inner_ranking_loss_weight": float("nan")}, "inner_ranking_loss_weight"),
    ({"inner_pseudo_count": -1.0}, "inner_pseudo_count"),
    ({"member_id_dropout": 1.0}, "member_id_dropout"),
    ({"unadapted_loss_weight": -1.0}, "unadapted_loss_weight"),
    ({"unadapted_loss_weight": True}, "unadapted_loss_weight"),
    ({"new_member_loss_weight": -1.0}, "new_member_loss_weight"),
    ({"new_member_loss_weight": float("nan")}, "new_member_loss_weight"),
    ({"support_gate": 1}, "support_gate"),
    ({"support_gate_count": 0.0}, "support_gate_count"),
    ({"support_gate_count": float("inf")}, "support_gate_count"),
])
def test_bad_new_options_are_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    LiMAMLModel(MetaBlock(), GlobalBlock(num_items=5), **kwargs)


@pytest.mark.parametrize("first_order", [False, True])
def test_offset_only_adaptation_moves_only_the_offset_unit(batch, first_order):
  model = build(make_model(inner_steps=2, inner_lr=0.3, adapt_offset_only=True,
                           first_order=first_order, block_kwargs={"meta_offset": True}), batch)
  before = model.meta_block.stack_weights(5)
  fast = model.adapt_weights(batch)
  *hidden, kernel, bias = [(a - b).numpy() for a, b in zip(fast, before)]
  assert all(not np.any(h) for h in hidden)
  assert not np.any(kernel[..., :-1]) and not np.any(bias[..., :-1])
  assert np.all(np.abs(bias[..., -1]) > 0)  # every task has support: every offset moved
  # So the adapted meta embedding differs from θm's only in its offset dimension, and the
  # support loss still falls.
  moved = (model._member_embedding(batch, fast) - model._member_embedding(batch, before)).numpy()
  assert not np.any(moved[:, :-1]) and np.all(np.abs(moved[:, -1]) > 0)
  assert np.all(support_losses(model, batch, fast).numpy() <
                support_losses(model, batch, before).numpy())


def test_offset_only_adaptation_still_meta_learns_the_whole_meta_block(batch):
  model = build(make_model(inner_steps=2, inner_lr=0.3, adapt_offset_only=True,
                           block_kwargs={"meta_offset": True}), batch)
  _, grads = meta_gradients(model, batch)
  assert all(np.any(g.numpy()) for g in grads)


@pytest.mark.parametrize("kwargs,match", [
    ({"adapt_offset_only": True}, "needs the member-level offset"),
    ({"adapt_offset_only": 1}, "adapt_offset_only` must be True or False"),
])
def test_bad_offset_only_adaptation_is_named(kwargs, match):
  with pytest.raises(ValueError, match=match):
    LiMAMLModel(MetaBlock(), GlobalBlock(num_items=5), **kwargs)


def test_shared_support_items_need_an_item_table():
  with pytest.raises(ValueError, match="num_items"):
    LiMAMLModel(MetaBlock(), GlobalBlock(num_items=0), support_items="shared")
  with pytest.raises(ValueError, match="num_items"):
    LiMAMLModel(MetaBlock(), GlobalBlock(num_items=0), support_items="own")


# ----------------------------------------------------------- no member features (issue 13 #1)
_NO_MEMBER_FEATURES = r'''
import sys
import numpy as np
import tensorflow as tf
from limaml_keras.layers import GlobalBlock, MetaBlock
from limaml_keras.model import GlobalModel, IdEmbeddingModel, LiMAMLModel
from limaml_keras.testing import random_task_batch
from limaml_keras import tensor_layout as F

path = sys.argv[1]
batch = random_task_batch(num_tasks=5, support=6, query=4, seed=1, member_dim=0)
# `save`: export and serve it too. Saving traces for long; the global model and the plain
# LiMAML model are exported with no member side by `limaml pipeline run` on ids-only data
# (pipeline_command_test), so only the other two are exported here.
for cls, kwargs, save in ((GlobalModel, {}, False),
                          (IdEmbeddingModel, {"num_members": 8}, True),
                          (LiMAMLModel, {"inner_steps": 2}, False),
                          (LiMAMLModel, {"inner_steps": 1, "support_items": "shared"}, True)):
  tf.keras.utils.set_random_seed(0)
  model = cls(MetaBlock(hidden_units=[6], embedding_dim=4), GlobalBlock(num_items=10),
              **kwargs)
  model.compile(optimizer=tf.keras.optimizers.Adam(0.01))
  model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), verbose=0)
  adapted = model.adapt(batch)
  assert adapted.shape == (5, 4) and np.isfinite(adapted).all()
  inputs = {F.MEMBER_ID: batch[F.MEMBER_ID], F.MEMBER_FEATURES: batch[F.MEMBER_FEATURES],
            F.ITEM_ID: batch["query_item_id"][:, 0],
            F.ITEM_FEATURES: batch["query_item_features"][:, 0],
            F.CONTEXT_FEATURES: batch["query_context_features"][:, 0]}
  expected = model(inputs).numpy()
  assert expected.shape == (5,) and np.isfinite(expected).all()
  print("ok", cls.__name__, kwargs)
  if not save:
    continue
  model.save(path)
  loaded = tf.saved_model.load(path)
  served = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in inputs.items()})
  got = list(served.values())[0].numpy()
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  print("served", cls.__name__, kwargs)
'''


@pytest.mark.slow
def test_no_member_features_train_adapt_and_export(tmp_path):
  """A `[T, 0]` member side used to abort the process in oneDNN (rc 134): run it in a child."""
  import subprocess
  import sys
  script = tmp_path / "no_member_features.py"
  script.write_text(_NO_MEMBER_FEATURES)
  result = subprocess.run([sys.executable, str(script), str(tmp_path / "saved")],
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.count("ok ") == 4 and result.stdout.count("served ") == 2


def test_cold_start_without_member_features_is_a_learned_vector():
  block = MetaBlock(hidden_units=[4], embedding_dim=3)
  out = block(tf.zeros([5, 0])).numpy()
  assert out.shape == (5, 3)
  np.testing.assert_allclose(out, np.repeat(out[:1], 5, axis=0))
  assert block.adaptable_weights[0].shape == (1, 4)


def test_limaml_with_member_id_embedding_adds_the_members_row(batch):
  model = build(make_model(inner_steps=0, num_members=8, support_items="shared"), batch)
  assert model._needs_member_id()
  model.member_embedding.embeddings.assign(tf.random.normal([8, 4]))
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  unknown = dict(numpy_batch, member_id=np.zeros_like(numpy_batch["member_id"]))
  rows = model.member_embedding(numpy_batch["member_id"]).numpy()
  np.testing.assert_allclose(model.adapt(numpy_batch) - model.adapt(unknown),
                             rows - model.member_embedding.embeddings.numpy()[0], rtol=1e-5,
                             atol=1e-5)


@pytest.mark.parametrize("cls", [LiMAMLModel, IdEmbeddingModel])
def test_member_id_dropout_trains_the_unknown_members_row(batch, cls):
  """Without dropout no training task uses row 0 (the ids are 1..); with it, row 0 learns."""
  ids = tf.range(1, batch["member_id"].shape[0] + 1, dtype=batch["member_id"].dtype)
  batch = dict(batch, member_id=ids)
  rows_0 = []
  for rate in (0.0, 0.9):
    model = make_model(cls, num_members=8, member_id_dropout=rate,
                       **({"inner_steps": 1} if cls is LiMAMLModel else {}))
    model.fit(tf.data.Dataset.from_tensors(batch).repeat(3), verbose=0)
    rows_0.append(np.abs(model.member_embedding.embeddings.numpy()[0]).sum())
  assert rows_0[0] == 0.0 and rows_0[1] > 0.0


def test_cold_start_embed_with_member_ids_adds_their_rows(batch):
  model = build(make_model(inner_steps=1, num_members=8), batch)
  table = tf.random.normal([8, 4])
  model.member_embedding.embeddings.assign(table)
  features = batch["member_features"]
  ids = np.arange(features.shape[0]) * 3  # 0, 3, 6, then >= 8: outside the table, row 0.
  expected = np.where((ids < 8)[:, None], table.numpy()[np.minimum(ids, 7)], table.numpy()[0])
  np.testing.assert_allclose(model.embed(features, ids).numpy() - model.embed(features).numpy(),
                             expected, rtol=1e-5, atol=1e-5)
  # With an empty support, `adapt` gives the same embedding (the serving cold-start path).
  empty = dict({k: v.numpy() for k, v in batch.items()}, member_id=ids)
  empty["support_mask"] = np.zeros_like(empty["support_mask"])
  np.testing.assert_allclose(model.adapt(empty), model.embed(features, ids).numpy(), rtol=1e-5,
                             atol=1e-5)


def test_support_count_cap_clips_only_the_count_inputs_of_the_meta_block(batch):
  kwargs = {"inner_steps": 1, "support_items": "shared", "use_history": True}
  free = build(make_model(**kwargs), batch)
  capped = build(make_model(support_count_cap=1, **kwargs), batch)
  free_inputs, capped_inputs = free._member_inputs(batch).numpy(), capped._member_inputs(batch).numpy()
  width = batch["support_item_features"].shape[-1]
  member_dim = batch[F.MEMBER_FEATURES].shape[-1]
  count_columns = [member_dim + 2 * width, member_dim + 2 * width + 1,
                   free_inputs.shape[-1] - 2, free_inputs.shape[-1] - 1]
  others = [c for c in range(free_inputs.shape[-1]) if c not in count_columns]
  np.testing.assert_allclose(capped_inputs[:, others], free_inputs[:, others], rtol=1e-6)
  np.testing.assert_allclose(capped_inputs[:, count_columns],
                             np.minimum(free_inputs[:, count_columns], np.log(2.0)), rtol=1e-6)
  assert free_inputs[:, count_columns].max() > np.log(2.0)  # The batch has longer supports.


@pytest.mark.parametrize("cap", [0, 2.5, True])
def test_bad_support_count_cap_is_named(cap):
  with pytest.raises(ValueError, match="support_count_cap"):
    make_model(support_count_cap=cap)


# ------------------------------------------------------- within-member ranking term (issue 12)
def _weights_after_one_step(batch, cls, **kwargs):
  model = build(make_model(cls, **kwargs), batch)
  model.train_on_batch(batch)
  return [v.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize("cls,kwargs", [(LiMAMLModel, {"inner_steps": 2}),
                                        (GlobalModel, {}),
                                        (IdEmbeddingModel, {"num_members": 8})])
def test_ranking_term_off_by_default_and_trains_every_model_when_on(batch, cls, kwargs):
  _assert_off_by_default_and_trains_when_on(batch, cls, "ranking_loss_weight", kwargs)


def _assert_off_by_default_and_trains_when_on(batch, cls, option, kwargs):
  """`option` = 0 is the default's step exactly; `option` = 1 changes what one step learns."""
  default = _weights_after_one_step(batch, cls, **kwargs)
  off = _weights_after_one_step(batch, cls, **{option: 0.0}, **kwargs)
  on = _weights_after_one_step(batch, cls, **{option: 1.0}, **kwargs)
  for d, o in zip(default, off):
    np.testing.assert_array_equal(d, o)
  assert any(not np.allclose(d, o) for d, o in zip(default, on))


def test_unadapted_loss_is_off_by_default_and_trains_when_on(batch):
  _assert_off_by_default_and_trains_when_on(batch, LiMAMLModel, "unadapted_loss_weight",
                                            {"inner_steps": 2, "num_members": 8})


def test_new_member_loss_is_off_by_default_and_trains_when_on(batch):
  _assert_off_by_default_and_trains_when_on(batch, LiMAMLModel, "new_member_loss_weight",
                                            {"inner_steps": 2, "num_members": 8})


def test_new_member_loss_adds_w_times_the_no_support_unknown_id_query_loss(batch):
  new_members = dict(batch, support_mask=tf.zeros_like(batch["support_mask"]),
                     member_id=tf.zeros_like(batch["member_id"]))
  model = build(make_model(inner_steps=2, num_members=8, support_gate=True,
                           new_member_loss_weight=0.4), batch)
  _assert_one_step_adds(model, batch, lambda: 0.4 * model._query_loss(new_members, None)[0])


def test_unadapted_loss_adds_w_times_the_cold_query_loss_to_the_outer_loss(batch):
  model = build(make_model(inner_steps=2, unadapted_loss_weight=0.4), batch)
  _assert_one_step_adds(model, batch, lambda: 0.4 * model._query_loss(batch, None)[0])


def _assert_one_step_adds(model, batch, extra_loss):
  """One SGD(1) step of `model` = a step on MAML's outer loss + `extra_loss()` + regularisation."""
  model.compile(optimizer=tf.keras.optimizers.SGD(1.0))
  variables = model.trainable_variables
  with tf.GradientTape() as tape:
    adapted = model._query_loss(batch, model.adapt_weights(batch))[0]
    expected_total = adapted + extra_loss() + model._regularization()
  expected = [v.numpy() - tf.convert_to_tensor(g).numpy() if g is not None else v.numpy()
              for v, g in zip(variables, tape.gradient(expected_total, variables))]
  model.train_on_batch(batch)
  for after, want in zip(model.trainable_variables, expected):
    np.testing.assert_allclose(after.numpy(), want, rtol=1e-4, atol=1e-6)


def test_ranking_term_adds_lambda_times_the_pairwise_loss_to_the_objective(batch):
  model = build(make_model(inner_steps=1, ranking_loss_weight=0.7), batch)
  fast = model.adapt_weights(batch)
  loss, logits, labels, mask = model._query_loss(batch, fast)
  expected = loss + 0.7 * ranking_loss(logits, labels, mask)
  np.testing.assert_allclose(model._objective(loss, logits, labels, mask).numpy(),
                             expected.numpy(), rtol=1e-6)
  # Its meta-gradient reaches the Meta Block through the inner loop (second order).
  with tf.GradientTape() as tape:
    fast = model.adapt_weights(batch)
    _, logits, labels, mask = model._query_loss(batch, fast)
    term = ranking_loss(logits, labels, mask)
  grads = tape.gradient(term, model.meta_block.adaptable_weights)
  assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_inner_ranking_term_changes_adaptation_only_for_tasks_with_a_pair(batch):
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  numpy_batch["support_label"][1] = 1.0  # Task 1: positives only, no pair.
  plain = build(make_model(inner_steps=2, inner_lr=0.5,
                           block_kwargs={"meta_item_interaction": True}), batch)
  ranked = build(make_model(inner_steps=2, inner_lr=0.5, inner_ranking_loss_weight=2.0,
                            block_kwargs={"meta_item_interaction": True}), batch)
  adapted_plain, adapted_ranked = plain.adapt(numpy_batch), ranked.adapt(numpy_batch)
  np.testing.assert_allclose(adapted_ranked[1], adapted_plain[1], rtol=1e-6)
  assert not np.allclose(adapted_ranked[0], adapted_plain[0])


def test_inner_pseudo_count_shrinks_each_tasks_step_by_n_over_n_plus_c(batch):
  numpy_batch = {k: v.numpy() for k, v in batch.items()}
  numpy_batch["support_mask"][1, 1:] = 0.0  # Task 1: one support interaction; the others six.
  tensors = as_tensors(numpy_batch)
  plain = build(make_model(inner_steps=1, inner_lr=0.5), tensors)
  shrunk = build(make_model(inner_steps=1, inner_lr=0.5, inner_pseudo_count=3.0), tensors)
  prior = plain.meta_block.stack_weights(5)
  factor = np.array([6 / 9, 1 / 4, 6 / 9, 6 / 9, 6 / 9])
  for w0, a, b in zip(prior, plain.adapt_weights(tensors), shrunk.adapt_weights(tensors)):
    step = (a - w0).numpy()
    expected = step * factor.reshape((5,) + (1,) * (step.ndim - 1))
    np.testing.assert_allclose((b - w0).numpy(), expected, rtol=1e-4, atol=1e-7)


# ------------------------------------------------------------------ support gate (issue 12)
def _gate_parts(model, batch):
  """`(gated output, ungated output, no-support prior, support size [T, 1])` after adaptation."""
  fast = model.adapt_weights(batch)
  ungated = model.meta_block(model._member_inputs(batch), fast_weights=fast).numpy()
  prior = model.meta_block(
      model._member_inputs({F.MEMBER_FEATURES: batch[F.MEMBER_FEATURES]})).numpy()
  count = batch["support_mask"].numpy().astype(np.float32).sum(axis=1, keepdims=True)
  return model._member_embedding(batch, fast).numpy(), ungated, prior, count


def test_support_gate_moves_the_embedding_by_n_over_n_plus_c(batch):
  """Gated output = prior + n / (n + c) * (ungated - prior); c = exp(log-count) per dimension."""
  model = build(make_model(inner_steps=1, use_history=True, support_gate=True), batch)
  model._gate_log_count.assign(np.log(np.linspace(0.5, 4.0, model.meta_block.embedding_dim)))
  gated, ungated, prior, count = _gate_parts(model, batch)
  pseudo = np.exp(model._gate_log_count.numpy())
  expected = prior + count / (count + pseudo) * (ungated - prior)
  np.testing.assert_allclose(gated, expected, rtol=1e-5, atol=1e-6)


def test_support_gate_gives_the_prior_without_support_and_learns_its_pseudo_count(batch):
  model = build(make_model(inner_steps=2, use_history=True, support_gate=True), batch)
  empty = dict(batch)
  empty["support_mask"] = tf.zeros_like(batch["support_mask"])
  np.testing.assert_allclose(model.adapt_embeddings(empty).numpy(),
                             model.embed(batch[F.MEMBER_FEATURES]).numpy(), rtol=1e-5, atol=1e-6)
  before = model._gate_log_count.numpy().copy()
  model.train_on_batch(batch)
  assert not np.allclose(model._gate_log_count.numpy(), before)


def test_support_gate_counts_the_support_up_to_the_count_cap(batch):
  """With `support_count_cap`, a longer support is trusted as one of the cap's size."""
  model = build(make_model(inner_steps=1, use_history=True, support_gate=True,
                           support_gate_count=3.0, support_count_cap=1), batch)
  gated, ungated, prior, count = _gate_parts(model, batch)
  assert count.max() > 1  # The batch has longer supports.
  trust = np.minimum(count, 1.0) / (np.minimum(count, 1.0) + 3.0)
  np.testing.assert_allclose(gated, prior + trust * (ungated - prior), rtol=1e-5, atol=1e-6)


def test_support_gate_starts_from_its_initial_pseudo_count(batch):
  """`support_gate_count` = c before training: a support of c interactions is half-trusted."""
  model = build(make_model(inner_steps=1, use_history=True, support_gate=True,
                           support_gate_count=5.0), batch)
  np.testing.assert_allclose(np.exp(model._gate_log_count.numpy()),
                             np.full(model.meta_block.embedding_dim, 5.0), rtol=1e-6)
  default = build(make_model(inner_steps=1, use_history=True, support_gate=True), batch)
  np.testing.assert_allclose(np.exp(default._gate_log_count.numpy()), 1.0, rtol=1e-6)
  assert model.get_config()["support_gate_count"] == 5.0


def test_support_gate_is_off_by_default(batch):
  default = _weights_after_one_step(batch, LiMAMLModel, inner_steps=1)
  off = _weights_after_one_step(batch, LiMAMLModel, inner_steps=1, support_gate=False)
  assert len(default) == len(off)
  for d, o in zip(default, off):
    np.testing.assert_array_equal(d, o)


def _evidence_model(batch, block_kwargs=None, **kwargs):
  model = build(make_model(inner_steps=1, num_members=8, support_gate=True, bilinear_evidence=True,
                           block_kwargs={"meta_item_interaction": True, **(block_kwargs or {})},
                           **kwargs), batch)
  rows = np.random.default_rng(6).normal(size=(8, 4)).astype(np.float32)
  rows[0] = 0.0  # The unknown member's row: no training example reaches it (zero-initialised).
  model.member_embedding.embeddings.assign(rows)
  kernel = model.global_block._meta_projection.kernel
  kernel.assign(np.random.default_rng(7).normal(size=kernel.shape).astype(np.float32))
  return model


def _interactions_of_first_query(batch, member_id):
  return {F.MEMBER_ID: member_id, F.MEMBER_FEATURES: batch[F.MEMBER_FEATURES],
          F.ITEM_ID: batch["query_item_id"][:, 0], F.ITEM_FEATURES: batch["query_item_features"][:, 0],
          F.CONTEXT_FEATURES: batch["query_context_features"][:, 0]}


def test_bilinear_evidence_gives_a_new_member_no_bilinear_term(batch):
  """No support and an unknown id: the evidence is zero, so the tower alone orders the items."""
  model = _evidence_model(batch)
  unknown = _interactions_of_first_query(batch, tf.zeros_like(batch[F.MEMBER_ID]))
  embedding = model.embed(batch[F.MEMBER_FEATURES], unknown[F.MEMBER_ID])
  np.testing.assert_allclose(
      model._evidence(batch, embedding).numpy(), 0.0, atol=1e-6)
  scores = model.score_logits(unknown).numpy()
  model.global_block._meta_projection.kernel.assign(tf.zeros([4, 7]))
  np.testing.assert_allclose(model.score_logits(unknown).numpy(), scores, rtol=1e-5, atol=1e-6)


def test_bilinear_evidence_is_the_support_change_plus_the_id_row(batch):
  """Evidence = n / (n + c) * (adapted - prior) + the member's ID row."""
  model = _evidence_model(batch)
  embedding, ungated, prior, count = _gate_parts(model, batch)
  pseudo = np.exp(model._gate_log_count.numpy())
  member_id = tf.where(batch[F.MEMBER_ID] < 8, batch[F.MEMBER_ID], 0)
  id_rows = tf.gather(model.member_embedding.embeddings, member_id).numpy()
  np.testing.assert_allclose(model._evidence(batch, embedding).numpy(),
                             count / (count + pseudo) * (ungated - prior) + id_rows,
                             rtol=1e-5, atol=1e-5)


def test_bilinear_evidence_scores_alike_in_training_tasks_and_at_serving(batch):
  """The served embedding is one vector per member; scoring recomputes the prior from features."""
  model = _evidence_model(batch)
  adapted = model.adapt(batch)
  from_tasks = model.score_query(batch).numpy()[:, 0]
  served = _interactions_of_first_query(batch, batch[F.MEMBER_ID])
  served[F.META_EMBEDDING] = adapted
  np.testing.assert_allclose(model.score_logits(served).numpy(), from_tasks, rtol=1e-5, atol=1e-5)


def test_fit_with_one_seed_is_bit_reproducible():
  """Same seed, same data: `fit` ends on the same weights to the last bit (gate and evidence on).

  A prior shared by the gate's uses broke this for the second-order step.
  """
  data = random_task_batch(num_tasks=96, support=6, query=4, seed=1)

  def fitted():
    model = make_model(inner_steps=3, num_members=8, support_gate=True, learn_inner_lr=True,
                       bilinear_evidence=True, block_kwargs={"meta_item_interaction": True})
    model.fit(tf.data.Dataset.from_tensor_slices(dict(data)).batch(16), epochs=3, verbose=0)
    return [v.numpy() for v in model.weights]

  for first, second in zip(fitted(), fitted()):
    np.testing.assert_array_equal(first, second)


def test_bilinear_evidence_needs_the_bilinear_term():
  with pytest.raises(ValueError, match="bilinear_evidence.*meta_item_interaction=True"):
    make_model(bilinear_evidence=True)


def test_evidence_in_tower_needs_the_model_to_compute_the_evidence():
  with pytest.raises(ValueError, match="evidence_in_tower=True\\) needs `bilinear_evidence=True"):
    make_model(block_kwargs={"meta_item_interaction": True, "evidence_in_tower": True})


def test_evidence_in_tower_orders_a_new_member_from_features_alone(batch):
  """No support, unknown id: the Meta Block's output reaches only the offset."""
  model = _evidence_model(batch, block_kwargs={"meta_item_interaction": True,
                                               "evidence_in_tower": True, "meta_offset": True})
  unknown = _interactions_of_first_query(batch, tf.zeros_like(batch[F.MEMBER_ID]))
  scores = model.score_logits(unknown).numpy()
  offset = model.embed(batch[F.MEMBER_FEATURES])[:, -1].numpy()
  for weight in model.meta_block.trainable_weights:  # Any other Meta Block ...
    weight.assign(weight + 0.5)
  moved = model.score_logits(unknown).numpy()
  new_offset = model.embed(batch[F.MEMBER_FEATURES])[:, -1].numpy()
  np.testing.assert_allclose(moved - scores, new_offset - offset, rtol=1e-4, atol=1e-5)
