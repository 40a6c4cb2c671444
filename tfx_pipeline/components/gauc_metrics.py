"""TFMA metrics over members: gAUC, and a bootstrap interval of a candidate's gAUC gain.

Both are query-based TFMA metrics: the `MetricsSpec` that holds them names the
member id as `query_key`, so TFMA groups the evaluation examples by member
(one `GroupByKey` in the Evaluator's Beam job) and each combiner input is one
member's examples.

* `GroupAUC` (`gauc`): per model, the member-weighted mean of per-member AUC
  (`limaml_keras.metrics.gauc`: weight = the member's example count; members
  whose examples are all positive or all negative have no AUC and are left
  out). With a baseline TFMA adds its diff, candidate minus baseline.
* `GroupAUCGainInterval` (`gauc_gain_lower_bound`, `gauc_gain_upper_bound`):
  the central `CONFIDENCE` interval of the candidate's gAUC minus the
  baseline's, by the paired Poisson bootstrap over members of
  `limaml_keras.bootstrap` (the same one `limaml evaluate` reports): the
  interval reflects which members happen to be in the evaluation period, the
  noise a gAUC gain must beat. A member's weights depend on its id alone, so
  the result does not depend on how Beam splits or orders the work, and the
  accumulator is `BOOTSTRAP_REPLICATES` pairs of sums: constant memory,
  merged across workers like any combiner.

The module registers both metrics with TFMA; a `MetricConfig` names them by
class name with `module` = this module (`evaluation_config` does).
"""

from typing import Dict, Iterable, List, Optional, Tuple

import apache_beam as beam
import numpy as np
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.metrics import metric_util
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.utils import model_util

from limaml_keras import metrics
from limaml_keras.bootstrap import GainSums

GAUC = "gauc"
GAUC_GAIN_LOWER_BOUND = "gauc_gain_lower_bound"
GAUC_GAIN_UPPER_BOUND = "gauc_gain_upper_bound"


def member_auc(labels: np.ndarray, predictions: np.ndarray) -> Optional[Tuple[float, float]]:
  """(AUC, weight) of one member's examples; None when they are not both positive and negative.

  The weight is the member's example count (`limaml_keras.metrics.gauc`).
  """
  labels = np.ravel(labels).astype(np.float64)
  if labels.size == 0 or labels.min() == labels.max():
    return None
  return metrics.auc(labels, np.ravel(predictions)), float(labels.size)


def _labels_and_predictions(element: metric_types.StandardMetricInputs,
                            eval_config: Optional[config_pb2.EvalConfig], model_name: str,
                            output_name: str) -> Tuple[np.ndarray, np.ndarray]:
  labels, predictions, _ = next(metric_util.to_label_prediction_example_weight(
      element, eval_config=eval_config, model_name=model_name, output_name=output_name,
      flatten=False))
  return np.ravel(labels), np.ravel(predictions)


def _check_query_key(name: str, query_key: str) -> None:
  if not query_key:
    raise ValueError(f"the {name!r} metric needs a MetricsSpec with query_key = the member id")


class GroupAUC(metric_types.Metric):
  """Member-weighted mean of per-member AUC (module docstring); needs a `query_key`."""

  def __init__(self, name: str = GAUC):
    super().__init__(_group_auc_computations, name=name)


def _group_auc_computations(name: str = GAUC,
                            eval_config: Optional[config_pb2.EvalConfig] = None,
                            model_names: Optional[List[str]] = None,
                            output_names: Optional[List[str]] = None,
                            query_key: str = "") -> metric_types.MetricComputations:
  _check_query_key(name, query_key)
  computations = []
  for model_name in model_names or [""]:
    for output_name in output_names or [""]:
      key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name)
      computations.append(metric_types.MetricComputation(
          keys=[key], preprocessors=None,
          combiner=_GroupAUCCombiner(key, eval_config)))
  return computations


class _GroupAUCCombiner(beam.CombineFn):
  """Accumulates [sum of weight x AUC, sum of weight] over members."""

  def __init__(self, key: metric_types.MetricKey,
               eval_config: Optional[config_pb2.EvalConfig]):
    self._key = key
    self._eval_config = eval_config

  def create_accumulator(self) -> np.ndarray:
    return np.zeros(2)

  def add_input(self, accumulator: np.ndarray,
                element: metric_types.StandardMetricInputs) -> np.ndarray:
    result = member_auc(*_labels_and_predictions(element, self._eval_config,
                                                 self._key.model_name, self._key.output_name))
    if result is not None:
      auc, weight = result
      accumulator += (weight * auc, weight)
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[np.ndarray]) -> np.ndarray:
    return np.sum(list(accumulators), axis=0)

  def extract_output(self, accumulator: np.ndarray) -> Dict[metric_types.MetricKey, float]:
    total, weight = accumulator
    return {self._key: float(total / weight) if weight > 0 else float("nan")}


class GroupAUCGainInterval(metric_types.Metric):
  """Bootstrap interval of candidate gAUC minus baseline gAUC (module docstring).

  Computed for every non-baseline model; nothing without a baseline.
  """

  def __init__(self, name: str = GAUC_GAIN_LOWER_BOUND):
    super().__init__(_gain_interval_computations, name=name)


def _gain_interval_computations(name: str = GAUC_GAIN_LOWER_BOUND,
                                eval_config: Optional[config_pb2.EvalConfig] = None,
                                model_names: Optional[List[str]] = None,
                                output_names: Optional[List[str]] = None,
                                query_key: str = "") -> metric_types.MetricComputations:
  _check_query_key(name, query_key)
  baseline_spec = model_util.get_baseline_model_spec(eval_config) if eval_config else None
  if baseline_spec is None:
    return []
  computations = []
  for model_name in model_names or [""]:
    if model_name == baseline_spec.name:
      continue
    for output_name in output_names or [""]:
      keys = [metric_types.MetricKey(name=bound, model_name=model_name, output_name=output_name)
              for bound in (name, GAUC_GAIN_UPPER_BOUND)]
      computations.append(metric_types.MetricComputation(
          keys=keys,
          preprocessors=[metric_types.FeaturePreprocessor(feature_keys=[query_key])],
          combiner=_GainIntervalCombiner(keys, eval_config, baseline_spec.name, query_key)))
  return computations


class _GainIntervalCombiner(beam.CombineFn):
  """Accumulates `bootstrap.GainSums` member by member."""

  def __init__(self, keys: List[metric_types.MetricKey],
               eval_config: Optional[config_pb2.EvalConfig], baseline_model_name: str,
               query_key: str):
    self._keys = keys
    self._eval_config = eval_config
    self._baseline_model_name = baseline_model_name
    self._query_key = query_key

  def create_accumulator(self) -> GainSums:
    return GainSums.empty()

  def add_input(self, accumulator: GainSums,
                element: metric_types.StandardMetricInputs) -> GainSums:
    key = self._keys[0]
    labels, candidate = _labels_and_predictions(element, self._eval_config, key.model_name,
                                                key.output_name)
    result = member_auc(labels, candidate)
    if result is None:
      return accumulator
    candidate_auc, weight = result
    _, baseline = _labels_and_predictions(element, self._eval_config,
                                          self._baseline_model_name, key.output_name)
    baseline_auc, _ = member_auc(labels, baseline)
    member = np.ravel(element.features[self._query_key])[0]
    return accumulator.add(member.decode("utf-8") if isinstance(member, bytes) else str(member),
                           candidate_auc - baseline_auc, weight)

  def merge_accumulators(self, accumulators: Iterable[GainSums]) -> GainSums:
    return GainSums.merge(accumulators)

  def extract_output(self, accumulator: GainSums) -> Dict[metric_types.MetricKey, float]:
    return dict(zip(self._keys, accumulator.interval()))


metric_types.register_metric(GroupAUC)
metric_types.register_metric(GroupAUCGainInterval)
