"""The Evaluator's extractors: TFMA's defaults, then only what the metrics read is kept.

The per-member metrics (gAUC and its gain interval, `gauc_metrics`) are
query-based: TFMA groups the evaluation examples by member with one
GroupByKey over whole extracts, and the DirectRunner keeps a shuffle's input
in memory. A default extract carries every raw feature of the example and
its serialized input beside the labels and the two models' predictions, so
that shuffle held the evaluation period several times over. The last
extractor here (`KEEP_WHAT_METRICS_READ`) drops everything the metrics do not
read: it keeps labels, predictions, example weights, slice keys and, of the
features, only the query keys (the member id). Slicing is done before it, by
TFMA's own `SliceKeyExtractor`.

The TFX Evaluator calls `custom_extractors` when the component is built with
`module_path` = this module (`tfx_pipeline.pipeline.pipeline` does).
"""

from typing import Any, Dict, List, Sequence

import apache_beam as beam
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants

#: Stage name of the last extractor.
KEEP_WHAT_METRICS_READ = "KeepWhatMetricsRead"
#: Extract keys the metrics read (features are kept by `query_keys` only).
KEPT_KEYS = (constants.LABELS_KEY, constants.PREDICTIONS_KEY, constants.EXAMPLE_WEIGHTS_KEY,
             constants.SLICE_KEY_TYPES_KEY)


def query_keys(eval_config: tfma.EvalConfig) -> List[str]:
  """The features the metrics specs group by (their `query_key`s)."""
  return sorted({spec.query_key for spec in eval_config.metrics_specs if spec.query_key})


def kept(extracts: Dict[str, Any], feature_keys: Sequence[str]) -> Dict[str, Any]:
  """The part of one example's extracts that the metrics read (module docstring)."""
  slim = {key: extracts[key] for key in KEPT_KEYS if key in extracts}
  features = extracts.get(constants.FEATURES_KEY)
  if features is not None:
    slim[constants.FEATURES_KEY] = {k: features[k] for k in feature_keys if k in features}
  return slim


def custom_extractors(eval_shared_model, eval_config: tfma.EvalConfig,
                      tensor_adapter_config=None) -> List[tfma.extractors.Extractor]:
  """TFMA's default extractors, then `KEEP_WHAT_METRICS_READ` (the TFX Evaluator's hook).

  Args:
    eval_shared_model: the evaluated model(s), as TFMA's `default_extractors` takes them.
    eval_config: the evaluation config (`evaluation_config.eval_config`).
    tensor_adapter_config: as TFMA's `default_extractors` takes it.

  Returns:
    The extractors, in order.
  """
  extractors = tfma.default_extractors(eval_shared_model=eval_shared_model,
                                       eval_config=eval_config,
                                       tensor_adapter_config=tensor_adapter_config)
  return extractors + [tfma.extractors.Extractor(
      stage_name=KEEP_WHAT_METRICS_READ,
      ptransform=beam.Map(kept, query_keys(eval_config)))]
