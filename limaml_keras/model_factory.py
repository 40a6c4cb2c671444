"""The one model factory: `ModelConfig` -> compiled Keras model.

The TFX Trainer (`tfx_pipeline.models.trainer`) and the offline evaluation
(`limaml_keras.evaluation.methods`) both build their models here.
"""

import tensorflow as tf

from limaml_keras.layers import GlobalBlock, MetaBlock
from limaml_keras.model import GlobalModel, IdEmbeddingModel, LiMAMLModel, PersonalizedRanker
from limaml_keras.model_config import GLOBAL, ID_EMBEDDING, LIMAML, ModelConfig
from limaml_keras.task_settings import DEFAULTS, TaskSettings


def build_model(config: ModelConfig, num_items: int, num_members: int,
                task_settings: TaskSettings = DEFAULTS) -> PersonalizedRanker:
  """The compiled, unbuilt model `config` describes.

  Args:
    config: the hyperparameters (`config.model` picks the model class).
    num_items: item-id vocabulary size including the unknown id 0.
    num_members: member-id vocabulary size including the unknown id 0.
    task_settings: the settings of the training tasks it will fit: plain
      models fit only the query side of history tasks (`task_history > 0`);
      LiMAML's `support_count_cap` is the largest support they (and
      `train_support_sizes`) give.

  Returns:
    The model; it builds on its first task batch.
  """
  meta = MetaBlock(hidden_units=config.meta_hidden, embedding_dim=config.embedding_dim)
  ranker = GlobalBlock(num_items=num_items, item_embedding_dim=config.item_embedding_dim,
                       num_cross_layers=config.num_cross_layers, hidden_units=config.global_hidden,
                       meta_item_interaction=config.meta_item_interaction,
                       meta_in_tower=config.meta_in_tower, meta_offset=config.meta_offset,
                       evidence_in_tower=config.evidence_in_tower)
  common = {"ranking_loss_weight": config.ranking_loss_weight,
             "inner_ranking_loss_weight": config.inner_ranking_loss_weight,
             "inner_pseudo_count": config.inner_pseudo_count,
             "bilinear_evidence": config.bilinear_evidence}
  fit_support = task_settings.task_history == 0
  if config.model == GLOBAL:
    model = GlobalModel(meta, ranker, fit_support=fit_support, **common)
  elif config.model == ID_EMBEDDING:
    model = IdEmbeddingModel(meta, ranker, num_members=num_members, id_l2=config.id_l2,
                             member_id_dropout=config.member_id_dropout,
                             fit_support=fit_support, **common)
  elif config.model == LIMAML:
    count_cap = task_settings.largest_training_support()
    if config.train_support_sizes:
      count_cap = min(count_cap, max(config.train_support_sizes))
    model = LiMAMLModel(meta, ranker, inner_steps=config.inner_steps, inner_lr=config.inner_lr,
                        learn_inner_lr=config.learn_inner_lr, use_history=config.use_history,
                        support_items=config.support_items,
                        support_item_dim=config.item_embedding_dim,
                        train_support_sizes=config.train_support_sizes,
                        max_inner_lr=config.max_inner_lr,
                        num_members=num_members if config.member_id_embedding else 0,
                        id_l2=config.id_l2, first_order=config.first_order,
                        member_id_dropout=config.member_id_dropout,
                        unadapted_loss_weight=config.unadapted_loss_weight,
                        new_member_loss_weight=config.new_member_loss_weight,
                        adapt_offset_only=config.adapt_offset_only,
                        support_gate=config.support_gate,
                        support_gate_count=config.support_gate_count,
                        support_count_cap=max(count_cap, 1), **common)
  else:  # ModelConfig validates `model`; this guards hand-built objects.
    raise ValueError(f"unknown model {config.model!r}")
  if config.ema_momentum:
    optimizer = tf.keras.optimizers.Adam(config.learning_rate, use_ema=True,
                                         ema_momentum=config.ema_momentum)
  else:
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
  model.compile(optimizer=optimizer)
  return model
