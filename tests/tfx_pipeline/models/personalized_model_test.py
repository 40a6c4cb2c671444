"""Tests of the personalised serving SavedModel, loaded as TF Serving loads it.

A tiny Transform output (tf.Transform's Beam impl on three rows) and an
untrained model are exported with a few members; the SavedModel is read back by
the TF1 session loader that TF Serving's C++ loader mirrors.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras import serving_contract
from tfx_pipeline.models import export
from tfx_pipeline.models import personalized_model as pm
from tfx_pipeline import testing

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

EMBEDDING_DIM = testing.EMBEDDING_DIM
MEMBERS = list(testing.MEMBERS)
# Requests: members 7, 8, then 9 (not in the table), each on two items.
REQUESTS = [{"member_id": m, "item_id": i, "age": a, "year": y}
            for m, a in ((7, 25.0), (8, 35.0), (9, 30.0)) for i, y in (("x", 1995), ("y", 2005))]


@pytest.fixture(scope="module")
def tft_output(tmp_path_factory):
  return testing.transform_output(str(tmp_path_factory.mktemp("transform_graph")))


@pytest.fixture(scope="module")
def model(tft_output):
  return testing.untrained_model(tft_output)


@pytest.fixture(scope="module")
def requests(tft_output):
  raw_spec = serving_contract.serving_feature_spec(tft_output.raw_feature_spec())
  return [serving_contract.raw_example(row, raw_spec).SerializeToString() for row in REQUESTS]


def _embeddings(num_members: int = len(MEMBERS)):
  return testing.embeddings(num_members)


_serve = testing.serve_signature


@pytest.fixture(scope="module")
def exported(model, tft_output, tmp_path_factory):
  path = str(tmp_path_factory.mktemp("serving") / "1")
  return pm.export_personalized_model(model, tft_output, MEMBERS, _embeddings(), path)


def test_signatures_and_assets(exported):
  with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], exported)
  assert {serving_contract.SERVING_SIGNATURE, pm.PREDICT_WITH_EMBEDDING_SIGNATURE,
          pm.MEMBER_EMBEDDING_SIGNATURE} <= set(meta_graph.signature_def)
  outputs = meta_graph.signature_def[serving_contract.SERVING_SIGNATURE].outputs
  assert set(outputs) == {serving_contract.PROBABILITIES, serving_contract.LOGITS, serving_contract.PERSONALISED}
  with open(os.path.join(exported, "assets", pm.MEMBER_IDS_ASSET)) as f:
    assert f.read().splitlines() == MEMBERS


def test_known_members_score_with_their_table_embedding(exported, requests):
  out = _serve(exported, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})
  assert out[serving_contract.PERSONALISED].tolist() == [True] * 4 + [False] * 2
  rows = np.repeat(_embeddings(), 2, axis=0)
  external = _serve(exported, pm.PREDICT_WITH_EMBEDDING_SIGNATURE,
                    {serving_contract.EXAMPLES: requests[:4], tensor_layout.META_EMBEDDING: rows})
  np.testing.assert_allclose(out[serving_contract.LOGITS][:4], external[serving_contract.LOGITS], rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(out[serving_contract.PROBABILITIES], 1 / (1 + np.exp(-out[serving_contract.LOGITS])),
                             rtol=1e-5)


def test_unknown_member_gets_the_cold_start_score(exported, requests, model, tft_output):
  out = _serve(exported, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})
  transformed = export.transform_requests(tft_output.transform_features_layer(),
                                          serving_contract.serving_feature_spec(tft_output.raw_feature_spec()),
                                          tf.constant(requests))
  cold = model.score_logits(export.interaction_batch(model, transformed)).numpy()
  np.testing.assert_allclose(out[serving_contract.LOGITS][4:], cold[4:], rtol=1e-5, atol=1e-6)
  assert not np.allclose(out[serving_contract.LOGITS][:4], cold[:4])


def test_cold_start_of_a_member_id_model_adds_the_members_id_row(requests, tft_output, tmp_path):
  model = testing.untrained_model(tft_output, member_id_embedding=True)
  path = pm.export_personalized_model(model, tft_output, ["7"], _embeddings(1), str(tmp_path / "1"))
  out = _serve(path, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})
  assert out[serving_contract.PERSONALISED].tolist() == [True] * 2 + [False] * 4
  batch = export.interaction_batch(model, export.transform_requests(
      tft_output.transform_features_layer(),
      serving_contract.serving_feature_spec(tft_output.raw_feature_spec()), tf.constant(requests)))
  # Member 8 (known to Transform, not in the table) and 9 (unknown): the Trainer model's score,
  # its un-adapted Meta Block plus the member's ID row (row 0 for 9).
  cold = model.score_logits(batch).numpy()
  np.testing.assert_allclose(out[serving_contract.LOGITS][2:], cold[2:], rtol=1e-5, atol=1e-6)
  meta_only = model.score_logits(
      {**batch, tensor_layout.META_EMBEDDING: model.embed(batch[tensor_layout.MEMBER_FEATURES])})
  assert not np.allclose(out[serving_contract.LOGITS][2:4], meta_only.numpy()[2:4])


def test_member_embedding_signature_reads_the_table(exported):
  out = _serve(exported, pm.MEMBER_EMBEDDING_SIGNATURE,
               {pm.MEMBER_ID_INPUT: [b"8", b"nobody", b"7"]})
  expected = _embeddings()[[1, 0]]
  np.testing.assert_allclose(out[tensor_layout.META_EMBEDDING][[0, 2]], expected, rtol=1e-6)
  np.testing.assert_array_equal(out[tensor_layout.META_EMBEDDING][1], 0)
  assert out[serving_contract.PERSONALISED].tolist() == [True, False, True]


def test_changing_one_embedding_changes_only_that_members_scores(
    exported, model, tft_output, requests, tmp_path):
  embeddings = _embeddings()
  embeddings[1] += 5.0
  changed = pm.export_personalized_model(model, tft_output, MEMBERS, embeddings,
                                         str(tmp_path / "2"))
  before = _serve(exported, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})
  after = _serve(changed, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})
  same = [0, 1, 4, 5]  # Member 7 and the unknown member 9.
  np.testing.assert_allclose(after[serving_contract.LOGITS][same], before[serving_contract.LOGITS][same], rtol=1e-6)
  assert not np.isclose(after[serving_contract.LOGITS][2:4], before[serving_contract.LOGITS][2:4]).any()


@pytest.mark.parametrize("member_ids, shape, match", [
    (["7", "7"], (2, EMBEDDING_DIM), "unique"),
    (["7", "a\nb"], (2, EMBEDDING_DIM), "one-line"),
    (["7"], (2, EMBEDDING_DIM), "len"),
    (["7", "8"], (2, EMBEDDING_DIM + 1), "d="),
])
def test_rejects_bad_tables(model, tft_output, tmp_path, member_ids, shape, match):
  with pytest.raises(ValueError, match=match):
    pm.export_personalized_model(model, tft_output, member_ids, np.zeros(shape),
                                 str(tmp_path / "1"))


def test_table_of_100k_members_round_trips(tmp_path):
  num_members, dim = 100_000, 16
  member_ids = [f"member-{i}" for i in range(num_members)]
  embeddings = np.random.default_rng(0).normal(size=[num_members, dim]).astype(np.float32)
  table = pm.MemberEmbeddingTable(pm.write_member_ids(member_ids, str(tmp_path)), embeddings)
  path = str(tmp_path / "table")
  tf.saved_model.save(table, path, signatures=pm.table_signature(table))
  # The embeddings live in the checkpoint, not in the graph.
  assert os.path.getsize(os.path.join(path, "saved_model.pb")) < 1_000_000
  picks = [0, 12_345, num_members - 1]
  out = _serve(path, "serving_default",
               {pm.MEMBER_ID_INPUT: [member_ids[i].encode() for i in picks] + [b"x"]})
  np.testing.assert_array_equal(out[tensor_layout.META_EMBEDDING][:3], embeddings[picks])
  assert out[serving_contract.PERSONALISED].tolist() == [True, True, True, False]


def test_read_member_table_round_trips(exported, tmp_path):
  ids, embeddings = pm.read_member_table(exported)
  assert ids == MEMBERS
  np.testing.assert_array_equal(embeddings, _embeddings())
  with pytest.raises(ValueError, match="is not a personalised SavedModel"):
    pm.read_member_table(str(tmp_path))
