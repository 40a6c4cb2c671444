"""MetaEmbeddingGen: the TFX component that adapts the trained model to every member.

Inputs: the Trainer's `model` (SavedModel with an `adapt` signature at
`path_utils.serving_model_path(model.uri)`), Transform's `transform_graph` and
`transformed_examples`. The component runs the meta-embedding Beam job
(`tfx_pipeline.beam.member_supports` + `tfx_pipeline.beam.embedding_job`) on the
interactions of `splits` (default `train`: only what is known before the
evaluation cutoff, so nothing of the evaluation period leaks into the
embeddings the Evaluator scores), keeping each member's latest `max_support`
interactions as support. Outputs:

* `meta_embeddings` (`MetaEmbeddings`): `meta_embeddings-*.tfrecord.gz`,
  `meta_embeddings-*.parquet` and `counters.json`; custom properties
  `members`, `empty_supports`, `truncated_supports`;
* `personalized_model` (a standard `Model`): the personalised serving
  SavedModel (`tfx_pipeline.models.personalized_model`) at `<uri>/Format-Serving`,
  where Evaluator and Pusher look. Members without training-period
  interactions are not in its table and get the cold-start embedding.
  With `raw_examples` (ExampleGen's raw examples) and `feature_spec` (the
  spec as `schema.spec_to_json` writes it), the SavedModel carries TF
  Serving warmup records (`limaml_keras.warmup.write_warmup_from_rows`) built from
  the first `limaml_keras.warmup.MAX_CATALOG_ROWS` raw examples of `splits`, so
  the Pusher pushes them with the version.

The Beam job streams; reading its output back into the in-graph table holds
the table (ids + embeddings) in memory, which it must fit anyway.

Example (in a pipeline):

```python
meta_embedding_gen = MetaEmbeddingGen(
    model=trainer.outputs["model"], transform_graph=transform.outputs["transform_graph"],
    examples=transform.outputs["transformed_examples"],
    raw_examples=example_gen.outputs["examples"], feature_spec=schema.spec_to_json(spec))
pusher = tfx.components.Pusher(model=meta_embedding_gen.outputs["personalized_model"], ...)
```
"""

import os
from typing import Any, Dict, Iterator, List

import apache_beam as beam
import tensorflow as tf
import tensorflow_transform as tft
from tfx import types as tfx_types
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import path_utils

from limaml_keras import catalog as catalog_lib
from limaml_keras import warmup
from tfx_pipeline.beam import embedding_job
from limaml_keras import serving_contract
from tfx_pipeline.beam import member_supports
from tfx_pipeline.models import personalized_model as personalized_model_lib
from limaml_keras import schema
from limaml_keras import task_settings

DEFAULT_SPLITS = "train"
DEFAULT_MAX_SUPPORT = task_settings.DEFAULTS.max_support


class MetaEmbeddings(tfx_types.Artifact):
  """The meta-embedding job's output: TFRecord + Parquet shards and `counters.json`."""
  # `<namespace>.<Name>`: the form Kubeflow Pipelines V2 requires of custom artifact types.
  TYPE_NAME = "limaml.MetaEmbeddings"


def parse_splits(splits: str, available: List[str]) -> List[str]:
  """Comma-separated split names -> list; ValueError on an empty list or unknown split."""
  names = [s.strip() for s in splits.split(",") if s.strip()]
  if not names:
    raise ValueError(f"splits must name at least one split, got {splits!r}")
  unknown = [s for s in names if s not in available]
  if unknown:
    raise ValueError(f"examples have no split(s) {unknown}; available: {available}")
  return names


def split_patterns(examples: tfx_types.Artifact, splits: str) -> List[str]:
  """The file patterns of `splits` (comma-separated) of an `Examples` artifact."""
  available = artifact_utils.decode_split_names(examples.split_names)
  return [os.path.join(artifact_utils.get_split_uri([examples], split), "*")
          for split in parse_splits(splits, available)]


def raw_rows(patterns: List[str]) -> Iterator[Dict[str, Any]]:
  """Raw rows of ExampleGen's TFRecord files (gzipped when named `*.gz`), read lazily.

  Raises:
    FileNotFoundError: when the patterns match no file.
    ValueError: naming the file and record that is not a `tf.Example`.
  """
  files = [f for pattern in patterns for f in sorted(tf.io.gfile.glob(pattern))]
  if not files:
    raise FileNotFoundError(f"no raw example files match {patterns}")
  for path in files:
    records = tf.data.TFRecordDataset(path, compression_type="GZIP" if path.endswith(".gz")
                                      else "").as_numpy_iterator()
    for number, record in enumerate(records):
      try:
        [row] = catalog_lib.rows_from_examples([record])
      except ValueError:
        raise ValueError(f"{path}: record {number} is not a tf.Example") from None
      yield row


def export_from_job_output(trainer_model_dir: str, transform_graph_dir: str, job_output: str,
                           export_dir: str) -> int:
  """Exports the personalised SavedModel of a job output; returns its member count.

  Args:
    trainer_model_dir: the Trainer's SavedModel (loads back as the Keras model).
    transform_graph_dir: the Transform graph it was trained with.
    job_output: the embedding job's output directory.
    export_dir: where the personalised SavedModel goes.
  """
  member_ids, embeddings, _ = embedding_job.read_table(job_output)
  model = tf.keras.models.load_model(trainer_model_dir)
  personalized_model_lib.export_personalized_model(
      model, tft.TFTransformOutput(transform_graph_dir), member_ids, embeddings, export_dir)
  return len(member_ids)


@tfx.dsl.components.component(use_beam=True)
def MetaEmbeddingGen(  # pylint: disable=invalid-name
    model: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Model],
    transform_graph: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.TransformGraph],
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    meta_embeddings: tfx.dsl.components.OutputArtifact[MetaEmbeddings],
    personalized_model: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Model],
    raw_examples: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.Examples] = None,
    splits: tfx.dsl.components.Parameter[str] = DEFAULT_SPLITS,
    max_support: tfx.dsl.components.Parameter[int] = DEFAULT_MAX_SUPPORT,
    batch_size: tfx.dsl.components.Parameter[int] = 256,
    feature_spec: tfx.dsl.components.Parameter[str] = "",
    beam_pipeline: tfx.dsl.components.BeamComponentParameter[beam.Pipeline] = None,
) -> None:
  """Meta embeddings of every member and the personalised serving model (module docstring).

  Args:
    model: the Trainer's model (SavedModel with an `adapt` signature).
    transform_graph: the Transform graph the model was trained with.
    examples: Transform's transformed examples.
    meta_embeddings: the job output.
    personalized_model: the personalised serving SavedModel.
    raw_examples: ExampleGen's raw examples; with `feature_spec`, the warmup
      records come from their `splits`.
    splits: comma-separated splits of `examples` whose interactions are
      support (default `train`).
    max_support: latest interactions kept per member.
    batch_size: members per `adapt` call.
    feature_spec: the feature spec as JSON (`schema.spec_to_json`); empty:
      no warmup records.
    beam_pipeline: provided by TFX, built from the pipeline's Beam args.

  Raises:
    ValueError: when only one of `raw_examples` and `feature_spec` is given,
      or `feature_spec` is not a valid spec.
  """
  if (raw_examples is None) != (not feature_spec):
    raise ValueError("warmup records need both raw_examples and feature_spec; got only "
                     f"{'raw_examples' if raw_examples is not None else 'feature_spec'}")
  spec = schema.spec_from_json(feature_spec) if feature_spec else None
  raw_patterns = split_patterns(raw_examples, splits) if raw_examples is not None else None
  trainer_model_dir = path_utils.serving_model_path(model.uri)
  patterns = split_patterns(examples, splits)
  counters = member_supports.run_transformed(
      trainer_model_dir, patterns, meta_embeddings.uri, model_version=model.uri,
      max_support=max_support, batch_size=batch_size, pipeline=beam_pipeline)
  for name, value in counters.items():
    meta_embeddings.set_int_custom_property(name, value)
  export_dir = path_utils.serving_model_path(personalized_model.uri)
  export_from_job_output(trainer_model_dir, transform_graph.uri, meta_embeddings.uri,
                         export_dir)
  if spec is not None:
    warmup.write_warmup_from_rows(
        export_dir, raw_rows(raw_patterns), spec,
        serving_contract.serving_feature_spec(tft.TFTransformOutput(transform_graph.uri).raw_feature_spec()),
        source=f"raw examples {raw_patterns}")
