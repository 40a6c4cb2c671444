"""Tiny, real Transform outputs and models for tests, examples and benchmarks.

`transform_output` runs the pipeline's `preprocessing_fn` with tf.Transform's
Beam implementation on a few raw rows and writes what the Transform
component writes (transform graph + raw metadata), so exporters, the
embedding job and the serving stack can be exercised in seconds without a
pipeline run. `untrained_model` builds a small LiMAML model on it and
`personalized_model` exports a servable personalised SavedModel version.

Example:

```python
tft_output = transform_output(str(tmp_path / "transform"))
model = untrained_model(tft_output)
path = personalized_model(model, tft_output, str(tmp_path / "serving" / "1"))
```
"""

import os
from typing import Dict, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import metadata_io
from tensorflow_transform.tf_metadata import schema_utils

from limaml_keras import tensor_layout
from limaml_keras import layers
from limaml_keras import model as model_lib
from limaml_keras import schema
from limaml_keras import serving_contract
from tfx_pipeline.models import preprocessing

#: Feature spec of the tiny data set: one numeric column per side.
SPEC = schema.FeatureSpec(member_numeric=("age",), item_numeric=("year",))
#: Raw spec as ExampleGen infers it (numeric member ids become INT).
RAW_FEATURE_SPEC = {
    "member_id": tf.io.FixedLenFeature([1], tf.int64),
    "item_id": tf.io.FixedLenFeature([1], tf.string),
    "timestamp": tf.io.FixedLenFeature([1], tf.int64),
    "label": tf.io.FixedLenFeature([1], tf.int64),
    "age": tf.io.FixedLenFeature([1], tf.float32),
    "year": tf.io.FixedLenFeature([1], tf.int64),
}
#: Training rows, in `RAW_FEATURE_SPEC` order: members 7 and 8, items x and y.
ROWS = ((7, b"x", 1, 1, 20.0, 1990), (8, b"y", 2, 0, 40.0, 2000), (7, b"y", 3, 1, 30.0, 2010))
#: Member ids in the table of `personalized_model` (9 and others are unknown).
MEMBERS = ("7", "8")
#: Beam's portable runner path with an in-process job service and workers: the
#: protocol Flink and Spark run Python pipelines through (pickled DoFns, Fn API
#: data and state channels), without a cluster. Tests run the Beam jobs on it.
PORTABLE_RUNNER_ARGS = ("--runner=PortableRunner", "--job_endpoint=embed",
                        "--environment_type=LOOPBACK")
EMBEDDING_DIM = 4


def instances(rows: Sequence[Tuple], raw_feature_spec: Mapping[str, object]) -> list:
  """tf.Transform instance dicts (`{column: [value]}`; `None` -> missing) of raw rows."""
  return [{name: [] if value is None else [value] for name, value in zip(raw_feature_spec, row)}
          for row in rows]


def transform_output(output_dir: str,
                     rows: Sequence[Tuple] = ROWS,
                     raw_feature_spec: Optional[Mapping[str, object]] = None,
                     feature_spec: schema.FeatureSpec = SPEC) -> tft.TFTransformOutput:
  """Analyses `rows` with the pipeline's `preprocessing_fn`; writes what Transform writes.

  Args:
    output_dir: receives the transform graph and the raw metadata.
    rows: raw rows, values in `raw_feature_spec` order.
    raw_feature_spec: the raw columns (default `RAW_FEATURE_SPEC`).
    feature_spec: which columns feed which side of the model.

  Returns:
    The Transform output, as the Trainer reads it.
  """
  raw_feature_spec = dict(raw_feature_spec or RAW_FEATURE_SPEC)
  metadata = dataset_metadata.DatasetMetadata(
      schema_utils.schema_from_feature_spec(raw_feature_spec))
  config = {preprocessing.FEATURE_SPEC_KEY: schema.spec_to_json(feature_spec)}

  def preprocessing_fn(inputs):
    return preprocessing.preprocessing_fn(inputs, custom_config=config)

  with beam.Pipeline() as pipeline, tft_beam.Context(
      temp_dir=os.path.join(output_dir, "tmp"), force_tf_compat_v1=False):
    _ = (((pipeline | beam.Create(instances(rows, raw_feature_spec)), metadata)
          | tft_beam.AnalyzeDataset(preprocessing_fn))
         | tft_beam.WriteTransformFn(output_dir))
  # The Transform component also writes the raw metadata (the serving request spec).
  metadata_io.write_metadata(
      metadata, os.path.join(output_dir, tft.TFTransformOutput.RAW_METADATA_DIR))
  tf.io.gfile.rmtree(os.path.join(output_dir, "tmp"))
  return tft.TFTransformOutput(output_dir)


def side_dims(tft_output: tft.TFTransformOutput) -> Dict[str, int]:
  """Width of the member, item and context feature vectors of a Transform output."""
  spec = tft_output.transformed_feature_spec()
  return {k: spec[k].shape[-1] for k in
          (tensor_layout.MEMBER_FEATURES, tensor_layout.ITEM_FEATURES, tensor_layout.CONTEXT_FEATURES)}


def untrained_model(tft_output: tft.TFTransformOutput, embedding_dim: int = EMBEDDING_DIM,
                    seed: int = 0, member_id_embedding: bool = False) -> model_lib.LiMAMLModel:
  """A small, built (seeded, untrained) LiMAML model for `tft_output`.

  With `member_id_embedding` it also has a member-ID table over the Transform
  vocabulary, filled with seeded random rows (an untrained one is all zeros).
  """
  tf.keras.utils.set_random_seed(seed)
  num_items = tft_output.vocabulary_size_by_name(preprocessing.ITEM_VOCABULARY) + 1
  num_members = (tft_output.vocabulary_size_by_name(preprocessing.MEMBER_VOCABULARY) + 1
                 if member_id_embedding else 0)
  ranker = model_lib.LiMAMLModel(
      layers.MetaBlock(hidden_units=[8], embedding_dim=embedding_dim),
      layers.GlobalBlock(num_items=num_items, item_embedding_dim=4, hidden_units=[8]),
      num_members=num_members)
  ranker.score_logits({tensor_layout.ITEM_ID: tf.zeros([1], tf.int64),
                       **{k: tf.zeros([1, d]) for k, d in side_dims(tft_output).items()}})
  if num_members:
    table = ranker.member_embedding.embeddings
    table.assign(tf.random.normal(table.shape, seed=seed))
  return ranker


def embeddings(num_members: int = len(MEMBERS), embedding_dim: int = EMBEDDING_DIM,
               seed: int = 1) -> np.ndarray:
  """Seeded random float32 `[num_members, embedding_dim]` meta embeddings."""
  rng = np.random.default_rng(seed)
  return rng.normal(scale=3.0, size=[num_members, embedding_dim]).astype(np.float32)


def personalized_model(model: model_lib.PersonalizedRanker, tft_output: tft.TFTransformOutput,
                       export_dir: str, member_ids: Sequence[str] = MEMBERS,
                       member_embeddings: Optional[np.ndarray] = None) -> str:
  """Exports a personalised serving SavedModel of `member_ids` to `export_dir`."""
  # pylint: disable=g-import-not-at-top
  from tfx_pipeline.models import personalized_model as personalized_model_lib
  # pylint: enable=g-import-not-at-top
  if member_embeddings is None:
    member_embeddings = embeddings(len(member_ids), model.meta_block.embedding_dim)
  return personalized_model_lib.export_personalized_model(
      model, tft_output, member_ids, member_embeddings, export_dir)


def transformed_examples(tft_output: tft.TFTransformOutput, rows: Sequence[Tuple],
                         raw_feature_spec: Optional[Mapping[str, object]] = None) -> list:
  """Raw rows as Transform's `transformed_examples` records (serialized `tf.train.Example`s).

  Args:
    tft_output: the Transform output whose graph transforms the rows.
    rows: raw rows, values in `raw_feature_spec` order (label and timestamp included).
    raw_feature_spec: the raw columns (default `RAW_FEATURE_SPEC`).
  """
  # pylint: disable=g-import-not-at-top
  from tfx_pipeline.models import export
  # pylint: enable=g-import-not-at-top
  raw_feature_spec = dict(raw_feature_spec or RAW_FEATURE_SPEC)
  spec = tft_output.raw_feature_spec()
  raw = [serving_contract.raw_example(dict(zip(raw_feature_spec, row)), spec).SerializeToString()
         for row in rows]
  transformed = export.transform_requests(tft_output.transform_features_layer(), spec,
                                          tf.constant(raw))
  examples = []
  for j in range(len(rows)):
    example = tf.train.Example()
    for key, values in transformed.items():
      value = np.reshape(values[j].numpy(), [-1])
      feature = example.features.feature[key]
      if value.dtype.kind in "SO":
        feature.bytes_list.value.extend(bytes(v) for v in value)
      elif value.dtype.kind in "iu":
        feature.int64_list.value.extend(value)
      else:
        feature.float_list.value.extend(value)
    examples.append(example.SerializeToString())
  return examples


def transformed_record(member_key: bytes, interaction: Mapping[str, np.ndarray]) -> bytes:
  """One transformed tf.Example as TaskGen reads it (`task_gen.parse_interaction` inverts it).

  Args:
    member_key: the member's key.
    interaction: transformed feature name -> values (floating dtypes become a
      float list, the others an int64 list).

  Returns:
    The serialized tf.Example.
  """
  example = tf.train.Example()
  features = example.features.feature
  features[tensor_layout.MEMBER_KEY].bytes_list.value.append(member_key)
  for key, values in interaction.items():
    values = np.asarray(values)
    kind = features[key].float_list if values.dtype.kind == "f" else features[key].int64_list
    kind.value.extend(values.ravel().tolist())
  return example.SerializeToString()


def write_records(path: str, records: Sequence[bytes]) -> str:
  """Writes serialized records to a gzipped TFRecord file; returns `path`."""
  with tf.io.TFRecordWriter(path, "GZIP") as writer:
    for record in records:
      writer.write(record)
  return path


def checksums(directory: str) -> Dict[str, str]:
  """`{file name: sha256 hex digest}` of the files directly in `directory`."""
  # pylint: disable=g-import-not-at-top
  import hashlib
  # pylint: enable=g-import-not-at-top
  out = {}
  for name in sorted(tf.io.gfile.listdir(directory)):
    path = os.path.join(directory, name)
    if not tf.io.gfile.isdir(path):
      with tf.io.gfile.GFile(path, "rb") as f:
        out[name] = hashlib.sha256(f.read()).hexdigest()
  return out


def serve_signature(saved_model_dir: str, signature_name: str,
                    inputs: Mapping[str, object]) -> Dict[str, np.ndarray]:
  """Runs one signature of a SavedModel the way TF Serving does (TF1 loader, `session.run`).

  Args:
    saved_model_dir: the version directory.
    signature_name: e.g. `serving_default`.
    inputs: signature input name -> value.

  Returns:
    Output name -> numpy array.
  """
  with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], saved_model_dir)
    signature = meta_graph.signature_def[signature_name]
    feed = {signature.inputs[k].name: v for k, v in inputs.items()}
    return session.run({k: v.name for k, v in signature.outputs.items()}, feed)
