"""The Evaluator's extractors: TFMA's defaults, then only what the metrics read is kept.

The per-member metrics (gAUC and its gain interval, `gauc_metrics`) are
query-based: TFMA groups the evaluation examples by member with one
GroupByKey over whole extracts, and the DirectRunner keeps a shuffle's input
in memory. A default extract carries every raw feature of the example and
its serialized input beside the labels and the two models' predictions, so
that shuffle held the evaluation period several times over. The last
extractor here (`KEEP_WHAT_METRICS_READ`) drops everything the metrics do not
read: it keeps labels, predictions, example weights (as Python numbers where
they are one value), slice keys and, of the features, only the query keys
(the member id). Slicing is done before it, by
TFMA's own `SliceKeyExtractor`. TFMA runs its metrics evaluator on the
extracts as they leave the stage named `ExtractSliceKeys` (the evaluator's
`run_after`), not after the last extractor, so the slimming is part of that
stage: TFMA's slice-key transform, then `KEEP_WHAT_METRICS_READ`.

The TFX Evaluator calls `custom_extractors` when the component is built with
`module_path` = this module (`tfx_pipeline.pipeline.pipeline` does).
"""

from typing import Any, Dict, List, Sequence

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import slice_key_extractor

#: Name of the slimming step inside the slice-key stage.
KEEP_WHAT_METRICS_READ = "KeepWhatMetricsRead"
#: TFMA's slice-key stage, after which its metrics evaluator runs.
SLICE_KEY_STAGE = slice_key_extractor.SLICE_KEY_EXTRACTOR_STAGE_NAME
#: Extract keys the metrics read (features are kept by `query_keys` only).
KEPT_KEYS = (constants.LABELS_KEY, constants.PREDICTIONS_KEY, constants.EXAMPLE_WEIGHTS_KEY,
             constants.SLICE_KEY_TYPES_KEY)
_NUMERIC_KEYS = (constants.LABELS_KEY, constants.PREDICTIONS_KEY, constants.EXAMPLE_WEIGHTS_KEY)


def query_keys(eval_config: tfma.EvalConfig) -> List[str]:
  """The features the metrics specs group by (their `query_key`s)."""
  return sorted({spec.query_key for spec in eval_config.metrics_specs if spec.query_key})


def scalars(value: Any) -> Any:
  """One-value numeric arrays -> Python numbers, inside (nested) dicts; anything else as is.

  A one-element array costs ~130 bytes pickled and ~110 in memory, a Python
  float 9 and 24. TFMA merges a member's extracts into arrays either way
  (`tfma.utils.merge_extracts`), and its metrics read numbers and arrays alike.
  """
  if isinstance(value, dict):
    return {key: scalars(item) for key, item in value.items()}
  if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "biuf":
    return value.item()
  return value


def kept(extracts: Dict[str, Any], feature_keys: Sequence[str]) -> Dict[str, Any]:
  """The part of one example's extracts that the metrics read (module docstring).

  Labels, predictions and weights of one value become Python numbers
  (`scalars`); the member id stays an array, as TFMA's query grouping reads it.
  """
  slim = {key: scalars(extracts[key]) if key in _NUMERIC_KEYS else extracts[key]
          for key in KEPT_KEYS if key in extracts}
  features = extracts.get(constants.FEATURES_KEY)
  if features is not None:
    slim[constants.FEATURES_KEY] = {k: features[k] for k in feature_keys if k in features}
  return slim


class _SliceKeysThenKeep(beam.PTransform):
  """TFMA's slice-key extraction, then only what the metrics read (module docstring)."""

  def __init__(self, slice_keys: beam.PTransform, feature_keys: Sequence[str]):
    super().__init__()
    self._slice_keys = slice_keys
    self._feature_keys = list(feature_keys)

  def expand(self, extracts):
    return (extracts
            | "SliceKeys" >> self._slice_keys
            | KEEP_WHAT_METRICS_READ >> beam.Map(kept, self._feature_keys))


def custom_extractors(eval_shared_model, eval_config: tfma.EvalConfig,
                      tensor_adapter_config=None) -> List[tfma.extractors.Extractor]:
  """TFMA's default extractors, the slice-key stage slimming its output (the TFX Evaluator's hook).

  Args:
    eval_shared_model: the evaluated model(s), as TFMA's `default_extractors` takes them.
    eval_config: the evaluation config (`evaluation_config.eval_config`).
    tensor_adapter_config: as TFMA's `default_extractors` takes it.

  Returns:
    The extractors, in order; the last keeps TFMA's slice-key stage name.

  Raises:
    ValueError: when TFMA's extractors do not end with its slice-key stage
      (another TFMA version: the metrics would not see the slimmed extracts).
  """
  extractors = tfma.default_extractors(eval_shared_model=eval_shared_model,
                                       eval_config=eval_config,
                                       tensor_adapter_config=tensor_adapter_config)
  last = extractors[-1]
  if last.stage_name != SLICE_KEY_STAGE:
    raise ValueError(f"TFMA's extractors end with {last.stage_name!r}, not {SLICE_KEY_STAGE!r}")
  return extractors[:-1] + [tfma.extractors.Extractor(
      stage_name=SLICE_KEY_STAGE,
      ptransform=_SliceKeysThenKeep(last.ptransform, query_keys(eval_config)))]
