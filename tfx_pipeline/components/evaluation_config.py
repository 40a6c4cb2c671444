"""The TFMA `EvalConfig` of the pipeline's Evaluator: who is compared, on what, and the gate.

* Models: the **candidate** is the personalised serving model, the
  **baseline** the global model of `BaselineTrainer`. Both are scored through
  their `serving_default` signature on serialized raw evaluation-period
  tf.Examples (`model_type` TF generic: loaded with `tf.saved_model.load`, as
  TF Serving loads them), prediction `probabilities`, label `label`.
* Metrics, for both models and their difference: example count, pooled AUC,
  log loss (binary cross-entropy), binary accuracy and calibration (mean
  prediction / mean label); and, grouped by member (`query_key` = the member
  id), gAUC and the bootstrap interval of the candidate's gAUC gain
  (`tfx_pipeline.components.gauc_metrics`).
* Slices: overall and by `member_activity` (`tfx_pipeline.components.activity_slices`).
* Gate (overall slice only; the activity slices are reported, not gated, as a
  small slice's numbers are noisy). A pooled AUC gain can come entirely from
  learning which members rate generously, which re-orders no member's items;
  the gate asks for what personalisation should give:
  - with a baseline, the lower bound of the 95 % paired-bootstrap interval of
    the candidate's gAUC minus the baseline's must exceed `min_gauc_gain`
    (default 0: a gain beyond the noise of which members were evaluated),
  - and the candidate's log loss may exceed the baseline's by at most
    `max_log_loss_increase` (adapted predictions must stay calibrated);
  - in every case the candidate's pooled AUC must be at least `min_auc` (a
    sanity floor; without a baseline it alone decides).
"""

import math
from typing import Sequence

import tensorflow_model_analysis as tfma

from limaml_keras import metrics
from limaml_keras import schema
from limaml_keras import serving_contract
from tfx_pipeline.components import activity_slices
from tfx_pipeline.components import gauc_metrics
from tfx_pipeline.pipeline import configs

CANDIDATE = tfma.CANDIDATE_KEY
BASELINE = tfma.BASELINE_KEY
AUC = "auc"
GAUC = gauc_metrics.GAUC
GAUC_GAIN_LOWER_BOUND = gauc_metrics.GAUC_GAIN_LOWER_BOUND
GAUC_GAIN_UPPER_BOUND = gauc_metrics.GAUC_GAIN_UPPER_BOUND
LOG_LOSS = "binary_crossentropy"
EXAMPLE_COUNT = "example_count"
MEAN_LABEL = "mean_label"
#: Pooled metrics computed besides the gated ones (TFMA class names).
REPORTED_METRICS = ("ExampleCount", "MeanLabel", "BinaryAccuracy", "Calibration")
#: The activity slices, in report order.
ACTIVITY_SLICES = metrics.SEGMENTS
_GAUC_MODULE = gauc_metrics.__name__


def _model_spec(name: str, is_baseline: bool) -> tfma.ModelSpec:
  return tfma.ModelSpec(name=name, is_baseline=is_baseline, model_type=tfma.TF_GENERIC,
                        signature_name=serving_contract.SERVING_SIGNATURE,
                        label_key=schema.LABEL_COLUMN, prediction_key=serving_contract.PROBABILITIES)


def _gated(class_name: str, threshold: tfma.MetricThreshold,
           module: str = "") -> tfma.MetricConfig:
  """A metric with `threshold` on the overall slice."""
  return tfma.MetricConfig(class_name=class_name, module=module, per_slice_thresholds=[
      tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)])


def check_thresholds(min_auc: float, min_gauc_gain: float,
                     max_log_loss_increase: float) -> None:
  """Raises ValueError on a threshold out of its range.

  Ranges: `min_auc` in [0, 1], `min_gauc_gain` in [-1, 1),
  `max_log_loss_increase` finite and >= 0.
  """
  if not 0.0 <= min_auc <= 1.0:
    raise ValueError(f"min_auc must be in [0, 1], got {min_auc!r}")
  if not -1.0 <= min_gauc_gain < 1.0:
    raise ValueError(f"min_gauc_gain must be in [-1, 1), got {min_gauc_gain!r}")
  if not (math.isfinite(max_log_loss_increase) and max_log_loss_increase >= 0.0):
    raise ValueError("max_log_loss_increase must be finite and >= 0, got "
                     f"{max_log_loss_increase!r}")


def eval_config(with_baseline: bool = True, min_auc: float = configs.MIN_AUC,
                min_gauc_gain: float = configs.MIN_GAUC_GAIN,
                max_log_loss_increase: float = configs.MAX_LOG_LOSS_INCREASE,
                slice_features: Sequence[str] = (activity_slices.ACTIVITY_FEATURE,),
                ) -> tfma.EvalConfig:
  """The Evaluator's config (module docstring).

  Args:
    with_baseline: compare against a baseline model (the Evaluator then needs
      a `baseline_model` input).
    min_auc: the candidate's overall pooled AUC must be at least this.
    min_gauc_gain: with a baseline, the lower bound of the 95 % bootstrap
      interval of the candidate's overall gAUC minus the baseline's must be
      strictly above this.
    max_log_loss_increase: with a baseline, the candidate's overall log loss
      minus the baseline's must be at most this.
    slice_features: features to slice by, one slicing spec each, besides the
      overall slice.

  Returns:
    The config.

  Raises:
    ValueError: on a threshold out of its range (`check_thresholds`).
  """
  check_thresholds(min_auc, min_gauc_gain, max_log_loss_increase)
  model_specs = [_model_spec(CANDIDATE, is_baseline=False)]
  pooled = [tfma.MetricConfig(class_name=name) for name in REPORTED_METRICS]
  pooled.append(_gated("AUC", tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_auc}))))
  per_member = [tfma.MetricConfig(class_name=gauc_metrics.GroupAUC.__name__, module=_GAUC_MODULE)]
  if with_baseline:
    model_specs.append(_model_spec(BASELINE, is_baseline=True))
    pooled.append(_gated("BinaryCrossEntropy", tfma.MetricThreshold(
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER,
            absolute={"value": max_log_loss_increase}))))
    # TFMA compares with >=; the next float up makes "strictly above".
    per_member.append(_gated(
        gauc_metrics.GroupAUCGainInterval.__name__,
        tfma.MetricThreshold(value_threshold=tfma.GenericValueThreshold(
            lower_bound={"value": math.nextafter(min_gauc_gain, math.inf)})),
        module=_GAUC_MODULE))
  else:
    pooled.append(tfma.MetricConfig(class_name="BinaryCrossEntropy"))
  return tfma.EvalConfig(
      model_specs=model_specs,
      slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[feature])
                                            for feature in slice_features],
      metrics_specs=[tfma.MetricsSpec(metrics=pooled),
                     tfma.MetricsSpec(metrics=per_member, query_key=schema.MEMBER_ID_COLUMN)])
