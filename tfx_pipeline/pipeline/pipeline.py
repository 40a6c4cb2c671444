"""`create_pipeline`: the one factory every runner calls.

    CsvExampleGen      train/ and eval/ CSV directories -> `train`, `eval` splits
    StatisticsGen      statistics of both splits
    SchemaGen          schema inferred from the training period
    ExampleValidator   both splits against that schema
    AnomaliesGate      fails the run on (non-tolerated) anomalies
    Transform          `tfx_pipeline.models.preprocessing`, analysed on `train` only
    TaskGen            one padded task record per member and split
    Trainer            LiMAML (`tfx_pipeline.models.trainer.run_fn`)
    BaselineTrainer    the global baseline, same data (optional)
    MetaEmbeddingGen   each member's meta embedding, adapted on their training-period
                       interactions, and the personalised serving model
    ActivitySlices     the raw `eval` split, each example tagged with its member's
                       activity bucket (`member_activity`)
    Evaluator          TFMA on that split: personalised model vs baseline, AUC, gAUC
                       and log loss overall and per activity bucket; blesses the
                       personalised model only if its gAUC gain is beyond the noise
                       and its log loss no worse (`evaluation_config`'s gate)
    Pusher             the personalised model, if blessed, atomically to
                       `<serving_model_dir>/<version>/` (`atomic_pusher`)

    Trainer --model--> MetaEmbeddingGen --personalized_model--> Evaluator (candidate)
    BaselineTrainer --model-----------------------------------> Evaluator (baseline)
    CsvExampleGen --> ActivitySlices --sliced_examples--------> Evaluator (examples)
    MetaEmbeddingGen --personalized_model--> Pusher <--blessing-- Evaluator

The split is by time, done before ExampleGen: `<data_root>/train/*` holds the
training period and `<data_root>/eval/*` the later evaluation period
(`tfx_pipeline.ops.input_data` writes them), and ExampleGen's input config maps
one directory to one split. The Evaluator scores the raw evaluation period:
the personalised model looks each example's member up in its table, built
from training-period interactions only, so nothing leaks from the scored
period."""

import dataclasses
from typing import Optional, Sequence

from tfx import v1 as tfx

from limaml_keras import schema
from tfx_pipeline.components import activity_slices
from tfx_pipeline.components import anomalies_gate
from tfx_pipeline.components import atomic_pusher
from tfx_pipeline.pipeline import configs
from tfx_pipeline.components import evaluation_config
from tfx_pipeline.components import evaluator_extractors
from tfx_pipeline.ops import input_data
from tfx_pipeline.components import meta_embedding_gen
from limaml_keras import model_config as model_config_lib
from limaml_keras import task_settings as task_settings_lib
from tfx_pipeline.models import preprocessing
from tfx_pipeline.models import trainer as trainer_module
from tfx_pipeline.components import task_gen

TRAIN_SPLIT = task_gen.TRAIN_SPLIT
EVAL_SPLIT = task_gen.EVAL_SPLIT


def _example_gen(data_root: str):
  splits = [tfx.proto.Input.Split(name=name, pattern=f"{directory}/*")
            for name, directory in ((TRAIN_SPLIT, input_data.TRAIN_DIR),
                                    (EVAL_SPLIT, input_data.EVAL_DIR))]
  return tfx.components.CsvExampleGen(input_base=data_root,
                                      input_config=tfx.proto.Input(splits=splits))


def _trainer(task_gen_component, transform, config: model_config_lib.ModelConfig,
             settings: task_settings_lib.TaskSettings):
  return tfx.components.Trainer(
      run_fn=configs.RUN_FN,
      examples=task_gen_component.outputs["tasks"],
      transform_graph=transform.outputs["transform_graph"],
      train_args=tfx.proto.TrainArgs(splits=[TRAIN_SPLIT]),
      eval_args=tfx.proto.EvalArgs(splits=[EVAL_SPLIT]),
      custom_config={**config.to_dict(),
                     trainer_module.TASK_SETTINGS_KEY: dataclasses.asdict(settings)})


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    feature_spec: schema.FeatureSpec,
    serving_model_dir: str,
    *,
    task_settings: Optional[task_settings_lib.TaskSettings] = None,
    model_config: Optional[model_config_lib.ModelConfig] = None,
    train_baseline: bool = True,
    min_auc: float = configs.MIN_AUC,
    min_gauc_gain: float = configs.MIN_GAUC_GAIN,
    max_log_loss_increase: float = configs.MAX_LOG_LOSS_INCREASE,
    tolerated_anomaly_types: Sequence[str] = configs.TOLERATED_ANOMALY_TYPES,
    enable_cache: bool = True,
    metadata_connection_config=None,
    beam_pipeline_args: Optional[Sequence[str]] = None,
) -> tfx.dsl.Pipeline:
  """Builds the LiMAML TFX pipeline (see the module docstring).

  Args:
    pipeline_name: name of the pipeline (and of its ML Metadata contexts).
    pipeline_root: root directory (or URI) of every component's outputs.
    data_root: directory (or URI) with `train/` and `eval/` raw-schema CSVs.
    feature_spec: which raw columns feed which side of the model.
    serving_model_dir: where Pusher writes versioned SavedModels (a TF
      Serving `model_base_path`).
    task_settings: how TaskGen and MetaEmbeddingGen make tasks and supports
      (default `TaskSettings()`).
    model_config: hyperparameters of the LiMAML Trainer (default
      `ModelConfig()`); the baseline uses `model_config.baseline()`.
    train_baseline: also train the global baseline (`BaselineTrainer`), the
      Evaluator's baseline; without it the `min_auc` gate alone decides.
    min_auc: the personalised model is pushed only if its overall
      evaluation-period pooled AUC is at least this...
    min_gauc_gain: ...and (with the baseline) the lower bound of the 95 %
      member-bootstrap interval of its gAUC minus the baseline's is above
      this...
    max_log_loss_increase: ...and its log loss exceeds the baseline's by at
      most this (`tfx_pipeline.components.evaluation_config`).
    tolerated_anomaly_types: ExampleValidator anomaly types that do not stop
      the run.
    enable_cache: reuse the outputs of components whose inputs and settings
      did not change.
    metadata_connection_config: ML Metadata connection (None for
      orchestrators that bring their own, such as Kubeflow).
    beam_pipeline_args: arguments of every Beam-powered component.

  Returns:
    The pipeline.

  Raises:
    ValueError: `model_config` does not describe the LiMAML model.
  """
  model_config = model_config or model_config_lib.ModelConfig()
  if model_config.model != model_config_lib.LIMAML:
    raise ValueError(f"model_config must describe the {model_config_lib.LIMAML!r} model, got "
                     f"{model_config.model!r}; the baseline is added by train_baseline")
  settings = task_settings or task_settings_lib.DEFAULTS

  example_gen = _example_gen(data_root)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  schema_gen = tfx.components.SchemaGen(statistics=statistics_gen.outputs["statistics"],
                                        infer_feature_shape=True, exclude_splits=[EVAL_SPLIT])
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  gate = anomalies_gate.AnomaliesGate(
      anomalies=example_validator.outputs["anomalies"],
      tolerated_anomaly_types=",".join(tolerated_anomaly_types))
  transform = tfx.components.Transform(
      examples=example_gen.outputs["examples"],
      schema=schema_gen.outputs["schema"],
      preprocessing_fn=configs.PREPROCESSING_FN,
      splits_config=tfx.proto.SplitsConfig(analyze=[TRAIN_SPLIT],
                                           transform=[TRAIN_SPLIT, EVAL_SPLIT]),
      custom_config={preprocessing.FEATURE_SPEC_KEY: schema.spec_to_json(feature_spec)},
      disable_statistics=True)
  transform.add_upstream_node(gate)
  tasks = task_gen.TaskGen(transformed_examples=transform.outputs["transformed_examples"],
                           **dataclasses.asdict(settings))
  trainer = _trainer(tasks, transform, model_config, settings).with_id(configs.TRAINER_ID)
  components = [example_gen, statistics_gen, schema_gen, example_validator, gate, transform,
                tasks, trainer]
  baseline = None
  if train_baseline:
    baseline = _trainer(tasks, transform, model_config.baseline(), settings).with_id(
        configs.BASELINE_TRAINER_ID)
    components.append(baseline)
  embeddings = meta_embedding_gen.MetaEmbeddingGen(
      model=trainer.outputs["model"],
      transform_graph=transform.outputs["transform_graph"],
      examples=transform.outputs["transformed_examples"],
      raw_examples=example_gen.outputs["examples"],  # Warmup records for the pushed version.
      feature_spec=schema.spec_to_json(feature_spec),
      splits=TRAIN_SPLIT,
      max_support=settings.max_support).with_id(configs.META_EMBEDDING_GEN_ID)
  personalized_model = embeddings.outputs["personalized_model"]
  sliced = activity_slices.ActivitySlices(examples=example_gen.outputs["examples"]).with_id(
      configs.ACTIVITY_SLICES_ID)
  sliced.add_upstream_node(gate)
  evaluator = tfx.components.Evaluator(
      examples=sliced.outputs["sliced_examples"],
      model=personalized_model,
      baseline_model=baseline.outputs["model"] if baseline else None,
      eval_config=evaluation_config.eval_config(
          with_baseline=baseline is not None, min_auc=min_auc, min_gauc_gain=min_gauc_gain,
          max_log_loss_increase=max_log_loss_increase),
      example_splits=[EVAL_SPLIT],
      # Extracts slimmed before TFMA groups them by member (`evaluator_extractors`).
      module_path=evaluator_extractors.__name__).with_id(configs.EVALUATOR_ID)
  pusher = atomic_pusher.AtomicPusher(
      model=personalized_model,
      model_blessing=evaluator.outputs["blessing"],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
  ).with_id(configs.PUSHER_ID)
  components += [embeddings, sliced, evaluator, pusher]
  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(beam_pipeline_args or ()))
