"""MetaEmbeddingGen in a tiny LocalDagRunner pipeline: Importers -> MetaEmbeddingGen.

Imported artifacts: a tiny real Transform graph, an untrained model exported
as the Trainer exports it (`<uri>/Format-Serving`), transformed examples
with a `train` and an `eval` split and the raw examples they come from (the
warmup records' source). Member 9 interacts only in the evaluation period
and member 7's evaluation interaction must not reach its embedding.
"""

import glob
import json
import os

import numpy as np
import pytest
from tfx import v1 as tfx
from tfx.utils import path_utils

from limaml_keras import catalog as catalog_lib
from limaml_keras import serving_requests as requests_lib
from limaml_keras import warmup
from tfx_pipeline.beam import embedding_job
from limaml_keras import serving_contract
from tfx_pipeline.models import export
from tfx_pipeline.beam import member_supports
from tfx_pipeline.components import meta_embedding_gen
from tfx_pipeline.models import personalized_model as pm
from limaml_keras import schema
from tfx_pipeline import testing

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

MAX_SUPPORT = 2
TRAIN = [(7, "x", 10, 1, 20.0, 1990), (7, "y", 20, 0, 22.0, 2000), (7, "x", 30, 1, 24.0, 1995),
         (8, "y", 5, 1, 40.0, 2010)]
EVAL = [(7, "y", 90, 0, 26.0, 2005), (9, "x", 95, 1, 33.0, 1990)]


def _raw_examples(rows):
  """ExampleGen's raw tf.Examples of `rows` (in `testing.RAW_FEATURE_SPEC` order)."""
  return [serving_contract.raw_example(dict(zip(testing.RAW_FEATURE_SPEC, row)),
                             testing.RAW_FEATURE_SPEC).SerializeToString() for row in rows]


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
    os.makedirs(root / "raw_examples" / f"Split-{split}")
    testing.write_records(str(root / "raw_examples" / f"Split-{split}" / "data_tfrecord.gz"),
                          _raw_examples(rows))
  model = _importer("ImportModel", trainer_uri, tfx.types.standard_artifacts.Model)
  graph = _importer("ImportTransformGraph", str(root / "transform"),
                    tfx.types.standard_artifacts.TransformGraph)
  examples = _importer("ImportExamples", str(root / "examples"),
                       tfx.types.standard_artifacts.Examples, split_names='["train", "eval"]')
  raw_examples = _importer("ImportRawExamples", str(root / "raw_examples"),
                           tfx.types.standard_artifacts.Examples,
                           split_names='["train", "eval"]')
  generator = meta_embedding_gen.MetaEmbeddingGen(
      model=model.outputs["result"], transform_graph=graph.outputs["result"],
      examples=examples.outputs["result"], raw_examples=raw_examples.outputs["result"],
      feature_spec=schema.spec_to_json(testing.SPEC), max_support=MAX_SUPPORT, batch_size=2)
  pipeline_root = str(root / "pipeline")
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name="meg_test", pipeline_root=pipeline_root,
      components=[model, graph, examples, raw_examples, generator],
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
  raw_spec = serving_contract.serving_feature_spec(run["tft_output"].raw_feature_spec())
  requests = [serving_contract.raw_example({"member_id": m, "item_id": "x", "age": 30.0, "year": 1995},
                                 raw_spec).SerializeToString() for m in (7, 9)]
  out = testing.serve_signature(path, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})
  assert out[serving_contract.PERSONALISED].tolist() == [True, False]  # 9: cold start.
  assert np.isfinite(out[serving_contract.LOGITS]).all()


def test_personalized_model_carries_warmup_of_the_train_split(run):
  path = path_utils.serving_model_path(run["model_uri"])
  requests = warmup.read_warmup_requests(path)
  members = [{row["member_id"] for row in catalog_lib.rows_from_examples(
      requests_lib.request_examples(r))} for r in requests]
  outputs = warmup.replay_warmup_requests(path, requests)
  # The training period's members (7: 3 interactions, 8: 1) and a cold one, each ranking
  # both items; member 9 (evaluation period only) is not a warmup member.
  assert [o[serving_contract.PERSONALISED].tolist() for o in outputs] == [[True, True], [True, True],
                                                           [False, False]]
  assert members[:2] == [{7}, {8}] and 9 not in members[2]


def test_warmup_needs_both_raw_examples_and_spec(run, tmp_path):
  model = _importer("ImportModel", run["trainer_uri"], tfx.types.standard_artifacts.Model)
  graph = _importer("ImportTransformGraph", str(run["root"] / "transform"),
                    tfx.types.standard_artifacts.TransformGraph)
  examples = _importer("ImportExamples", str(run["root"] / "examples"),
                       tfx.types.standard_artifacts.Examples, split_names='["train", "eval"]')
  generator = meta_embedding_gen.MetaEmbeddingGen(
      model=model.outputs["result"], transform_graph=graph.outputs["result"],
      examples=examples.outputs["result"], feature_spec=schema.spec_to_json(testing.SPEC))
  with pytest.raises(ValueError, match="need both raw_examples and feature_spec; got only "
                     "feature_spec"):
    tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
        pipeline_name="meg_bad", pipeline_root=str(tmp_path / "pipeline"),
        components=[model, graph, examples, generator],
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(tmp_path / "metadata.sqlite"))))


def test_raw_rows_are_read_lazily_and_bad_records_named(tmp_path):
  path = testing.write_records(str(tmp_path / "a.gz"), _raw_examples(TRAIN) + [b"junk"])
  rows = meta_embedding_gen.raw_rows([str(tmp_path / "*.gz")])
  assert [next(rows)["member_id"] for _ in TRAIN] == [7, 7, 7, 8]
  with pytest.raises(ValueError, match=f"{path}: record 4 is not a tf.Example"):
    next(rows)
  with pytest.raises(FileNotFoundError, match="no raw example files"):
    next(meta_embedding_gen.raw_rows([str(tmp_path / "none*")]))


def test_parse_splits():
  assert meta_embedding_gen.parse_splits("train, eval", ["train", "eval"]) == ["train", "eval"]
  with pytest.raises(ValueError, match=r"no split\(s\) \['test'\]"):
    meta_embedding_gen.parse_splits("test", ["train", "eval"])
  with pytest.raises(ValueError, match="at least one split"):
    meta_embedding_gen.parse_splits(" , ", ["train"])
