"""Compiles the LiMAML pipeline to a Kubeflow Pipelines V2 (Vertex AI Pipelines) JSON spec.

The same `create_pipeline` as the local run, with paths under one pipeline
root URI (typically `gs://...`) and no ML Metadata config (the orchestrator
brings its own). Every step runs in `image`, which must hold TFX and this
package. Beam steps get `beam_pipeline_args`: the DirectRunner by default,
Dataflow/Flink/Spark arguments at scale.
"""

import os
from typing import Any, Dict, Optional, Sequence

from tfx import v1 as tfx

from limaml_keras import schema
from tfx_pipeline.pipeline import configs
from tfx_pipeline.pipeline import pipeline as pipeline_lib


def compile_pipeline(output_file: str,
                     pipeline_root: str,
                     data_root: str,
                     feature_spec: schema.FeatureSpec,
                     *,
                     pipeline_name: str = configs.PIPELINE_NAME,
                     image: str = configs.PIPELINE_IMAGE,
                     serving_model_dir: Optional[str] = None,
                     beam_pipeline_args: Sequence[str] = configs.KUBEFLOW_BEAM_PIPELINE_ARGS,
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
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
      output_dir=os.path.dirname(os.path.abspath(output_file)),
      output_filename=os.path.basename(output_file))
  return runner.run(pipeline, write_out=True)

