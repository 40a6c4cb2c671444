"""Tests of the tiny Transform output and models of `tfx_pipeline.testing`."""

import os

import numpy as np
import pytest
import tensorflow as tf

from limaml_keras import tensor_layout
from limaml_keras import serving_contract
from tfx_pipeline.models import personalized_model
from tfx_pipeline.models import preprocessing
from tfx_pipeline import testing
from tfx_pipeline.components import task_gen

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tft_output(tmp_path_factory):
  return testing.transform_output(str(tmp_path_factory.mktemp("transform")))


def test_transform_output_has_vocabularies_and_raw_metadata(tft_output):
  assert tft_output.vocabulary_size_by_name(preprocessing.ITEM_VOCABULARY) == 2
  assert tft_output.vocabulary_size_by_name(preprocessing.MEMBER_VOCABULARY) == 2
  assert set(tft_output.raw_feature_spec()) == set(testing.RAW_FEATURE_SPEC)
  assert not os.path.exists(os.path.join(tft_output.transform_savedmodel_dir, "..", "tmp"))


def test_untrained_model_is_built_for_the_transform_output(tft_output):
  model = testing.untrained_model(tft_output)
  assert model.built and model.meta_block.embedding_dim == testing.EMBEDDING_DIM
  again = testing.untrained_model(tft_output)
  for a, b in zip(model.get_weights(), again.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_personalized_model_is_servable(tft_output, tmp_path):
  model = testing.untrained_model(tft_output)
  path = testing.personalized_model(model, tft_output, str(tmp_path / "1"))
  raw_spec = serving_contract.serving_feature_spec(tft_output.raw_feature_spec())
  request = serving_contract.raw_example({"member_id": 7, "item_id": "x", "age": 1.0, "year": 2000},
                               raw_spec).SerializeToString()
  loaded = tf.saved_model.load(path)
  out = loaded.signatures[serving_contract.SERVING_SIGNATURE](examples=tf.constant([request]))
  assert out[serving_contract.PERSONALISED].numpy().tolist() == [True]
  assert testing.embeddings().shape == (len(testing.MEMBERS), testing.EMBEDDING_DIM)
  assert tensor_layout.META_EMBEDDING not in out


def test_checksums_of_the_files_in_a_directory(tmp_path):
  (tmp_path / "a").write_bytes(b"x")
  (tmp_path / "sub").mkdir()
  sums = testing.checksums(str(tmp_path))
  assert list(sums) == ["a"]
  assert sums["a"] == "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"


def test_serve_signature_runs_the_table_through_the_tf1_loader(tft_output, tmp_path):
  model = testing.untrained_model(tft_output)
  path = testing.personalized_model(model, tft_output, str(tmp_path / "1"))
  out = testing.serve_signature(path, personalized_model.MEMBER_EMBEDDING_SIGNATURE,
                                {personalized_model.MEMBER_ID_INPUT: [b"8", b"nobody"]})
  np.testing.assert_array_equal(out[tensor_layout.META_EMBEDDING][0], testing.embeddings()[1])
  assert out[serving_contract.PERSONALISED].tolist() == [True, False]


def test_transformed_record_is_what_task_gen_parses():
  interaction = {tensor_layout.MEMBER_ID: np.array([3]),
                 tensor_layout.MEMBER_FEATURES: np.array([0.5, -1.0], np.float32),
                 tensor_layout.ITEM_ID: np.array([9]),
                 tensor_layout.ITEM_FEATURES: np.array([2.0], np.float32),
                 tensor_layout.CONTEXT_FEATURES: np.zeros(0, np.float32),
                 tensor_layout.LABEL: np.array([1.0], np.float32),
                 tensor_layout.TIMESTAMP: np.array([1234567890123])}
  key, parsed = task_gen.parse_interaction(testing.transformed_record(b"m-1", interaction))
  assert key == b"m-1" and parsed.keys() == interaction.keys()
  for name, value in interaction.items():
    np.testing.assert_array_equal(parsed[name], value, err_msg=name)
    assert parsed[name].dtype == value.dtype, name
