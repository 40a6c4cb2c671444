"""Compiles the LiMAML pipeline to a Kubeflow Pipelines V2 (Vertex AI Pipelines) JSON spec.

The same `create_pipeline` as the local run, with paths under one pipeline
root URI (typically `gs://...`) and no ML Metadata config (the orchestrator
brings its own). Every step runs in `image`, which must hold TFX and this
package. Beam steps get `beam_pipeline_args`: the DirectRunner by default,
Dataflow/Flink/Spark arguments at scale.

Training on a Vertex AI worker pool: pass `vertex_training=vertex_training_config(...)`.
The Trainers then run as Vertex AI custom jobs (TFX's Vertex Trainer executor)
on `replica_count` machines of `machine_type`: one chief (worker pool 0) and
`replica_count - 1` workers (pool 1). Vertex AI sets `TF_CONFIG` on every
replica, so the Trainer's `run_fn` picks `MultiWorkerMirroredStrategy`
(`tfx_pipeline.models.distribution`); with accelerators, each replica also
mirrors over its GPUs.
"""

import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence

from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.extensions.google_cloud_ai_platform import constants as vertex_constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor

from limaml_keras import schema
from tfx_pipeline.models import distribution
from tfx_pipeline.pipeline import configs
from tfx_pipeline.pipeline import pipeline as pipeline_lib

#: Vertex AI's default machine for a training replica.
DEFAULT_MACHINE_TYPE = "n1-standard-8"


def vertex_training_config(project: str, region: str, image: str, replica_count: int = 1,
                           machine_type: str = DEFAULT_MACHINE_TYPE,
                           accelerator_type: Optional[str] = None,
                           accelerator_count: int = 0) -> Dict[str, Any]:
  """`custom_config` entries that run a Trainer on a Vertex AI worker pool.

  Args:
    project: the Google Cloud project.
    region: the Vertex AI region, e.g. `europe-west4`.
    image: the training container (TFX and this package), usually the pipeline's.
    replica_count: training machines: 1 chief + `replica_count - 1` workers.
    machine_type: Compute Engine machine type of every replica.
    accelerator_type: e.g. `NVIDIA_TESLA_T4`; None for CPU machines.
    accelerator_count: accelerators per replica.

  Returns:
    The keys of TFX's Vertex AI Trainer extension (the job's `worker_pool_specs`)
    and the distribution (`multi_worker` for more than one replica).

  Raises:
    ValueError: a replica count below 1, or accelerators without a type.
  """
  if replica_count < 1:
    raise ValueError(f"replica_count must be >= 1, got {replica_count}")
  if accelerator_count and not accelerator_type:
    raise ValueError("accelerator_count needs an accelerator_type")
  machine_spec = {"machine_type": machine_type}
  if accelerator_type:
    machine_spec.update(accelerator_type=accelerator_type,
                        accelerator_count=max(1, accelerator_count))
  pool = {"machine_spec": machine_spec, "container_spec": {"image_uri": image}}
  pools = [{**pool, "replica_count": 1}]
  if replica_count > 1:
    pools.append({**pool, "replica_count": replica_count - 1})
  return {
      vertex_constants.ENABLE_VERTEX_KEY: True,
      vertex_constants.VERTEX_REGION_KEY: region,
      vertex_trainer_executor.TRAINING_ARGS_KEY: {"project": project,
                                                  "worker_pool_specs": pools},
      distribution.DISTRIBUTION_KEY: (distribution.MULTI_WORKER if replica_count > 1
                                      else distribution.AUTO),
  }


def _train_on_vertex(pipeline: tfx.dsl.Pipeline, vertex_training: Mapping[str, Any]) -> None:
  """Makes every Trainer of `pipeline` a Vertex AI training job with `vertex_training`."""
  trainers = [c for c in pipeline.components if isinstance(c, tfx.components.Trainer)]
  if not trainers:
    raise ValueError("the pipeline has no Trainer to run on Vertex AI")
  for trainer in trainers:
    custom_config = json.loads(trainer.exec_properties.get("custom_config") or "{}")
    custom_config.update(vertex_training)
    trainer.exec_properties["custom_config"] = json.dumps(custom_config, sort_keys=True)
    # What tfx.extensions.google_cloud_ai_platform.Trainer does.
    trainer.executor_spec = executor_spec.ExecutorClassSpec(vertex_trainer_executor.GenericExecutor)


def compile_pipeline(output_file: str,
                     pipeline_root: str,
                     data_root: str,
                     feature_spec: schema.FeatureSpec,
                     *,
                     pipeline_name: str = configs.PIPELINE_NAME,
                     image: str = configs.PIPELINE_IMAGE,
                     serving_model_dir: Optional[str] = None,
                     beam_pipeline_args: Sequence[str] = configs.KUBEFLOW_BEAM_PIPELINE_ARGS,
                     vertex_training: Optional[Mapping[str, Any]] = None,
                     **kwargs) -> Dict[str, Any]:
  """Writes the pipeline's Kubeflow V2 spec to `output_file`.

  Args:
    output_file: the JSON file to write.
    pipeline_root: root URI of the pipeline's artifacts.
    data_root: URI holding `train/` and `eval/` CSVs (see
      `tfx_pipeline.ops.input_data`).
    feature_spec: the data's feature spec.
    pipeline_name: the pipeline name.
    image: container image of every step.
    serving_model_dir: Pusher destination; default `<pipeline_root>/serving_model`.
    beam_pipeline_args: arguments of the Beam-powered steps.
    vertex_training: `vertex_training_config(...)`: train on a Vertex AI worker
      pool; None trains inside the pipeline step's own container.
    **kwargs: further `create_pipeline` arguments.

  Returns:
    The compiled pipeline job, as a dict.
  """
  try:
    import kfp.pipeline_spec  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise ImportError("compiling for Kubeflow needs the kfp-pipeline-spec package (TFX's kfp "
                      "extra): pip install 'kfp-pipeline-spec==0.2.2'") from None
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      data_root=data_root,
      feature_spec=feature_spec,
      serving_model_dir=serving_model_dir or os.path.join(pipeline_root, "serving_model"),
      beam_pipeline_args=beam_pipeline_args,
      **kwargs)
  if vertex_training:
    _train_on_vertex(pipeline, vertex_training)
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=os.path.dirname(os.path.abspath(output_file)),
      output_filename=os.path.basename(output_file))
  return runner.run(pipeline, write_out=True)

