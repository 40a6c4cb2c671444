"""The TFMA `EvalConfig` of the pipeline's Evaluator: who is compared, on what, and the gate.

* Models: the **candidate** is the personalised serving model, the
  **baseline** the global model of `BaselineTrainer`. Both are scored through
  their `serving_default` signature on serialized raw evaluation-period
  tf.Examples (`model_type` TF generic: loaded with `tf.saved_model.load`, as
  TF Serving loads them), prediction `probabilities`, label `label`.
* Metrics: example count, AUC, binary accuracy and calibration (mean
  prediction / mean label), for both models and their difference.
* Slices: overall and by `member_activity` (`tfx_pipeline.components.activity_slices`).
* Gate (overall slice only; the activity slices are reported, not gated, as a
  small slice's AUC is noisy): AUC >= `min_auc`, and with a baseline the
  candidate's AUC must exceed the baseline's by at least `min_auc_gain`
  (TFMA compares with >=, so a positive gain means strictly better).
  Without a baseline the value threshold alone decides.
"""

from typing import Sequence

import tensorflow_model_analysis as tfma

from limaml_keras import metrics
from limaml_keras import schema
from tfx_pipeline.components import activity_slices
from tfx_pipeline.pipeline import configs
from limaml_keras import serving_contract

CANDIDATE = tfma.CANDIDATE_KEY
BASELINE = tfma.BASELINE_KEY
AUC = "auc"
EXAMPLE_COUNT = "example_count"
#: Metrics computed besides the gated AUC (TFMA class names).
REPORTED_METRICS = ("ExampleCount", "BinaryAccuracy", "Calibration")
#: The activity slices, in report order.
ACTIVITY_SLICES = metrics.SEGMENTS


def _model_spec(name: str, is_baseline: bool) -> tfma.ModelSpec:
  return tfma.ModelSpec(name=name, is_baseline=is_baseline, model_type=tfma.TF_GENERIC,
                        signature_name=serving_contract.SERVING_SIGNATURE,
                        label_key=schema.LABEL_COLUMN, prediction_key=serving_contract.PROBABILITIES)


def _auc_threshold(min_auc: float, min_auc_gain: float,
                   with_baseline: bool) -> tfma.MetricThreshold:
  threshold = tfma.MetricThreshold(
      value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_auc}))
  if with_baseline:
    threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": min_auc_gain}))
  return threshold


def check_thresholds(min_auc: float, min_auc_gain: float) -> None:
  """Raises ValueError on a `min_auc` outside [0, 1] or a `min_auc_gain` outside [-1, 1]."""
  if not 0.0 <= min_auc <= 1.0:
    raise ValueError(f"min_auc must be in [0, 1], got {min_auc!r}")
  if not -1.0 <= min_auc_gain <= 1.0:
    raise ValueError(f"min_auc_gain must be in [-1, 1], got {min_auc_gain!r}")


def eval_config(with_baseline: bool = True, min_auc: float = configs.MIN_AUC,
                min_auc_gain: float = configs.MIN_AUC_GAIN,
                slice_features: Sequence[str] = (activity_slices.ACTIVITY_FEATURE,),
                ) -> tfma.EvalConfig:
  """The Evaluator's config (module docstring).

  Args:
    with_baseline: compare against a baseline model (the Evaluator then needs
      a `baseline_model` input).
    min_auc: the candidate's overall AUC must be at least this.
    min_auc_gain: with a baseline, the candidate's overall AUC minus the
      baseline's must be at least this.
    slice_features: features to slice by, one slicing spec each, besides the
      overall slice.

  Returns:
    The config.

  Raises:
    ValueError: on a `min_auc` outside [0, 1] or a `min_auc_gain` outside
      [-1, 1].
  """
  check_thresholds(min_auc, min_auc_gain)
  model_specs = [_model_spec(CANDIDATE, is_baseline=False)]
  if with_baseline:
    model_specs.append(_model_spec(BASELINE, is_baseline=True))
  auc = tfma.MetricConfig(class_name="AUC", per_slice_thresholds=[tfma.PerSliceMetricThreshold(
      slicing_specs=[tfma.SlicingSpec()],
      threshold=_auc_threshold(min_auc, min_auc_gain, with_baseline))])
  reported = [tfma.MetricConfig(class_name=name) for name in REPORTED_METRICS]
  return tfma.EvalConfig(
      model_specs=model_specs,
      slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[feature])
                                            for feature in slice_features],
      metrics_specs=[tfma.MetricsSpec(metrics=reported + [auc])])
