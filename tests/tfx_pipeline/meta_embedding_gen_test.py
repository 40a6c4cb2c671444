"""MetaEmbeddingGen in a tiny LocalDagRunner pipeline: Importers -> MetaEmbeddingGen.

Imported artifacts: a tiny real Transform graph, an untrained model exported
as the Trainer exports it (`<uri>/Format-Serving`) and transformed examples
with a `train` and an `eval` split. Member 9 interacts only in the evaluation
period and member 7's evaluation interaction must not reach its embedding.
"""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.utils import path_utils

from tfx_pipeline import embedding_job
from tfx_pipeline import export
from tfx_pipeline import member_supports
from tfx_pipeline import meta_embedding_gen
from tfx_pipeline import personalized_model as pm
from tfx_pipeline import testing

MAX_SUPPORT = 2
TRAIN = [(7, "x", 10, 1, 20.0, 1990), (7, "y", 20, 0, 22.0, 2000), (7, "x", 30, 1, 24.0, 1995),
         (8, "y", 5, 1, 40.0, 2010)]
EVAL = [(7, "y", 90, 0, 26.0, 2005), (9, "x", 95, 1, 33.0, 1990)]


def _importer(name, uri, artifact_type, **properties):
  return tfx.dsl.Importer(source_uri=uri, artifact_type=artifact_type,
                          properties=properties or None).with_id(name)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  root = tmp_path_factory.mktemp("meg")
  tft_output = testing.transform_output(str(root / "transform"))
  trainer_uri = str(root / "trainer_model")
  export.export_serving_model(testing.untrained_model(tft_output), tft_output,
                              path_utils.serving_model_path(trainer_uri))
  for split, rows in (("train", TRAIN), ("eval", EVAL)):
    os.makedirs(root / "examples" / f"Split-{split}")
    testing.write_records(str(root / "examples" / f"Split-{split}" / "part.gz"),
                          testing.transformed_examples(tft_output, rows))
  model = _importer("ImportModel", trainer_uri, tfx.types.standard_artifacts.Model)
  graph = _importer("ImportTransformGraph", str(root / "transform"),
                    tfx.types.standard_artifacts.TransformGraph)
  examples = _importer("ImportExamples", str(root / "examples"),
                       tfx.types.standard_artifacts.Examples, split_names='["train", "eval"]')
  generator = meta_embedding_gen.MetaEmbeddingGen(
      model=model.outputs["result"], transform_graph=graph.outputs["result"],
      examples=examples.outputs["result"], max_support=MAX_SUPPORT, batch_size=2)
  pipeline_root = str(root / "pipeline")
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name="meg_test", pipeline_root=pipeline_root,
      components=[model, graph, examples, generator],
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(root / "metadata.sqlite")),
      beam_pipeline_args=["--direct_running_mode=in_memory"]))
  [embeddings_uri] = glob.glob(os.path.join(pipeline_root, "MetaEmbeddingGen",
                                            "meta_embeddings", "*"))
  [model_uri] = glob.glob(os.path.join(pipeline_root, "MetaEmbeddingGen",
                                       "personalized_model", "*"))
  return {"root": root, "trainer_uri": trainer_uri, "embeddings_uri": embeddings_uri,
          "model_uri": model_uri, "tft_output": tft_output}


def test_embeddings_come_from_the_train_split_only(run, tmp_path):
  ids, embeddings, table = embedding_job.read_table(run["embeddings_uri"])
  assert ids == ["7", "8"]  # Member 9 has only evaluation-period interactions.
  rows = {r[embedding_job.MEMBER_ID]: r for r in table.to_pylist()}
  assert (rows["7"][embedding_job.SUPPORT_SIZE], rows["7"][embedding_job.AS_OF_TIMESTAMP]) == (
      2, 30)  # The latest 2 training interactions; the eval one (at 90) is not used.
  with open(os.path.join(run["embeddings_uri"], embedding_job.COUNTERS_FILE)) as f:
    assert json.load(f) == {embedding_job.MEMBERS: 2, embedding_job.EMPTY_SUPPORTS: 0,
                            embedding_job.TRUNCATED_SUPPORTS: 1}
  # The same job outside TFX on the train split alone gives the same embeddings.
  standalone = str(tmp_path / "standalone")
  member_supports.run_transformed(
      path_utils.serving_model_path(run["trainer_uri"]),
      [str(run["root"] / "examples" / "Split-train" / "*")], standalone, "v",
      max_support=MAX_SUPPORT, batch_size=2)
  expected_ids, expected, _ = embedding_job.read_table(standalone)
  assert expected_ids == ids
  np.testing.assert_array_equal(embeddings, expected)


def test_personalized_model_is_servable_where_pusher_looks(run):
  path = path_utils.serving_model_path(run["model_uri"])
  assert path.endswith("Format-Serving")
  ids, table = pm.read_member_table(path)
  expected_ids, expected, _ = embedding_job.read_table(run["embeddings_uri"])
  assert ids == expected_ids
  np.testing.assert_array_equal(table, expected)
  raw_spec = export.serving_feature_spec(run["tft_output"])
  requests = [export.raw_example({"member_id": m, "item_id": "x", "age": 30.0, "year": 1995},
                                 raw_spec).SerializeToString() for m in (7, 9)]
  with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
    signature = meta_graph.signature_def[export.SERVING_SIGNATURE]
    out = session.run({k: v.name for k, v in signature.outputs.items()},
                      {signature.inputs[export.EXAMPLES].name: requests})
  assert out[pm.PERSONALISED].tolist() == [True, False]  # 9: cold start.
  assert np.isfinite(out[export.LOGITS]).all()


def test_parse_splits():
  assert meta_embedding_gen.parse_splits("train, eval", ["train", "eval"]) == ["train", "eval"]
  with pytest.raises(ValueError, match=r"no split\(s\) \['test'\]"):
    meta_embedding_gen.parse_splits("test", ["train", "eval"])
  with pytest.raises(ValueError, match="at least one split"):
    meta_embedding_gen.parse_splits(" , ", ["train"])
