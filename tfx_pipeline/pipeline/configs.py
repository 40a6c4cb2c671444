"""Constants of the LiMAML pipeline: names, defaults and Beam settings."""

PIPELINE_NAME = "limaml"

#: Python paths of the user functions the Transform and Trainer components load.
PREPROCESSING_FN = "tfx_pipeline.models.preprocessing.preprocessing_fn"
RUN_FN = "tfx_pipeline.models.trainer.run_fn"

#: Component ids (also the directory names under the pipeline root).
TRAINER_ID = "Trainer"
BASELINE_TRAINER_ID = "BaselineTrainer"
ACTIVITY_SLICES_ID = "ActivitySlices"
META_EMBEDDING_GEN_ID = "MetaEmbeddingGen"
EVALUATOR_ID = "Evaluator"
PUSHER_ID = "Pusher"

#: The Evaluator's gate (overall slice, `tfx_pipeline.components.evaluation_config`): the
#: personalised model's pooled AUC must be at least MIN_AUC and, with a
#: baseline, the lower bound of the 95 % member-bootstrap interval of its gAUC
#: minus the baseline's must be above MIN_GAUC_GAIN, and its log loss may
#: exceed the baseline's by at most MAX_LOG_LOSS_INCREASE.
MIN_AUC = 0.5
MIN_GAUC_GAIN = 0.0
MAX_LOG_LOSS_INCREASE = 0.01

# The evaluation period's share, the task settings and the model config have
# their defaults in the library: `limaml_keras.task_settings` (EVAL_FRACTION,
# TaskSettings) and `limaml_keras.model_config.ModelConfig`.

#: ExampleValidator anomaly types that do not stop the run: new ids and new
#: categories in the evaluation period are expected (they map to the unknown
#: id 0 or an out-of-vocabulary slot).
TOLERATED_ANOMALY_TYPES = ("ENUM_TYPE_UNEXPECTED_STRING_VALUES",)

#: Beam on this machine: the DirectRunner in multi-processing mode.
LOCAL_BEAM_PIPELINE_ARGS = (
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=2",
)
#: Beam in a Kubeflow step (replace with e.g. Dataflow args at scale):
#: one worker process per core of the step's container.
KUBEFLOW_BEAM_PIPELINE_ARGS = (
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=0",
)

#: Container image of the Kubeflow V2 pipeline steps (TFX + this package).
PIPELINE_IMAGE = "gcr.io/my-project/limaml-pipeline:latest"

#: Synthetic data of `limaml pipeline run` without `--data`.
SYNTHETIC_MEMBERS = 3000
SYNTHETIC_ITEMS = 500
SYNTHETIC_SEED = 0
