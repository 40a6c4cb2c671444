"""The Evaluator's extractors: TFMA's defaults, then the extracts slimmed to what metrics read.

That the metrics computed from the slimmed extracts are right is checked on
real TFMA runs in `tests/tfx_pipeline/ops/evaluation_results_test.py`, which
evaluates through `custom_extractors`.
"""

import apache_beam as beam
from apache_beam.testing import util as beam_testing
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tfx.components.util import udf_utils

from limaml_keras import schema
from limaml_keras import synthetic
from tfx_pipeline.components import evaluation_config
from tfx_pipeline.components import evaluator_extractors
from tfx_pipeline.pipeline import configs
from tfx_pipeline.pipeline import pipeline as pipeline_lib


def test_only_what_the_metrics_read_is_kept():
  extracts = {
      constants.INPUT_KEY: b"serialized example",
      constants.FEATURES_KEY: {schema.MEMBER_ID_COLUMN: np.array([b"m1"]),
                               "age": np.array([31.0]), "item_id": np.array([b"x"])},
      constants.TRANSFORMED_FEATURES_KEY: {"candidate": {"item_id": np.array([3])}},
      constants.LABELS_KEY: np.array([1.0]),
      constants.PREDICTIONS_KEY: {"candidate": np.array([0.7]), "baseline": np.array([0.6])},
      constants.EXAMPLE_WEIGHTS_KEY: np.array([1.0]),
      constants.SLICE_KEY_TYPES_KEY: [(), (("activity", b"1-5"),)],
  }
  kept = evaluator_extractors.kept(extracts, [schema.MEMBER_ID_COLUMN])
  assert set(kept) == {constants.FEATURES_KEY, constants.LABELS_KEY, constants.PREDICTIONS_KEY,
                       constants.EXAMPLE_WEIGHTS_KEY, constants.SLICE_KEY_TYPES_KEY}
  assert list(kept[constants.FEATURES_KEY]) == [schema.MEMBER_ID_COLUMN]
  # One-value numbers as Python numbers; the member id and the slice keys as they were.
  assert kept[constants.PREDICTIONS_KEY] == {"candidate": 0.7, "baseline": 0.6}
  assert kept[constants.LABELS_KEY] == 1.0 and kept[constants.EXAMPLE_WEIGHTS_KEY] == 1.0
  assert all(type(v) is float for v in kept[constants.PREDICTIONS_KEY].values())
  assert kept[constants.FEATURES_KEY][schema.MEMBER_ID_COLUMN] is (
      extracts[constants.FEATURES_KEY][schema.MEMBER_ID_COLUMN])
  assert kept[constants.SLICE_KEY_TYPES_KEY] is extracts[constants.SLICE_KEY_TYPES_KEY]
  # Optional keys that are absent stay absent.
  assert evaluator_extractors.kept({constants.LABELS_KEY: 1}, ["m"]) == {constants.LABELS_KEY: 1}


def test_only_one_value_numeric_arrays_become_python_numbers():
  values = {"one": np.array([3], np.int64), "float32": np.array([[0.25]], np.float32),
            "two": np.array([1.0, 2.0]), "text": np.array([b"m1"], object), "none": None,
            "nested": {"flag": np.array([True])}}
  out = evaluator_extractors.scalars(values)
  assert out["one"] == 3 and type(out["one"]) is int
  assert out["float32"] == 0.25 and type(out["float32"]) is float
  assert out["nested"] == {"flag": True}
  for same in ("two", "text", "none"):
    assert out[same] is values[same]


def test_the_query_keys_are_the_member_id():
  for with_baseline in (True, False):
    config = evaluation_config.eval_config(with_baseline=with_baseline)
    assert evaluator_extractors.query_keys(config) == [schema.MEMBER_ID_COLUMN]


def test_the_pipelines_evaluator_loads_the_hook():
  """TFX falls back to the default extractors, silently, when the hook does not load."""
  evaluator, = [c for c in pipeline_lib.create_pipeline(
      "p", "/root", "/data", synthetic.SPEC, "/serving").components
                if c.id == configs.EVALUATOR_ID]
  assert evaluator.exec_properties["module_path"] == evaluator_extractors.__name__
  hook = udf_utils.try_get_fn(evaluator.exec_properties, "custom_extractors")
  assert hook is evaluator_extractors.custom_extractors


def test_the_metrics_evaluator_reads_the_slimmed_extracts():
  """TFMA runs its metrics after the stage its `run_after` names: that stage must slim."""
  config = evaluation_config.eval_config(with_baseline=False)
  extractors = evaluator_extractors.custom_extractors(eval_shared_model=None, eval_config=config)
  evaluators = tfma.default_evaluators(eval_config=config)
  assert [e.run_after for e in evaluators] == [extractors[-1].stage_name]
  extracts = {constants.FEATURES_KEY: {schema.MEMBER_ID_COLUMN: np.array([b"m1"]),
                                       "age": np.array([31.0])},
              constants.INPUT_KEY: b"serialized", constants.LABELS_KEY: np.array([1.0]),
              constants.PREDICTIONS_KEY: np.array([0.7])}
  with beam.Pipeline() as pipeline:
    out = pipeline | beam.Create([extracts]) | extractors[-1].ptransform
    keys = out | beam.Map(lambda e: (sorted(e), sorted(e[constants.FEATURES_KEY])))
    beam_testing.assert_that(keys, beam_testing.equal_to([(
        sorted([constants.FEATURES_KEY, constants.LABELS_KEY, constants.PREDICTIONS_KEY,
                constants.SLICE_KEY_TYPES_KEY]), [schema.MEMBER_ID_COLUMN])]))
