"""Constants of the LiMAML pipeline: names, defaults and Beam settings."""

from typing import Tuple

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

#: Local Beam, one process: the DirectRunner with no worker process to start.
IN_MEMORY_BEAM_PIPELINE_ARGS = ("--direct_running_mode=in_memory",)
#: Local Beam over 2 worker processes (one per core of the 2-core reference machine).
MULTI_PROCESSING_BEAM_PIPELINE_ARGS = (
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=2",
)
#: `limaml pipeline run` runs Beam in one process up to this many interactions and
#: over worker processes above. Each worker imports TensorFlow and gets its own copy
#: of the data, which costs more than the second core gives on small data.
#: Measured by `benchmarks/pipeline_scale.py` on 2 cores: at 94k interactions
#: in memory 372 s and 1.9 GB peak against multi-processing 577 s and 4.3 GB; at
#: 979k multi-processing 1,641 s, in memory over 1,800 s (its TaskGen alone is
#: 2.2x slower). The two lines cross near 300k.
IN_MEMORY_MAX_INTERACTIONS = 300_000


def local_beam_pipeline_args(num_interactions: int) -> Tuple[str, ...]:
  """The local Beam arguments for a run over `num_interactions` (in memory when small)."""
  if num_interactions <= IN_MEMORY_MAX_INTERACTIONS:
    return IN_MEMORY_BEAM_PIPELINE_ARGS
  return MULTI_PROCESSING_BEAM_PIPELINE_ARGS

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
