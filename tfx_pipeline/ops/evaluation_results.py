"""Reads the Evaluator's TFMA results: AUC, gAUC and log loss per activity slice, and the verdict.

Example:

```python
summary = read_evaluation(evaluator_outputs["evaluation"].uri)
for line in report_lines(summary):
  print(line)
```
"""

import dataclasses
import math
from typing import Dict, List, Optional, Tuple

import tensorflow as tf
import tensorflow_model_analysis as tfma

from tfx_pipeline.components import activity_slices
from tfx_pipeline.components import evaluation_config

OVERALL = "overall"


@dataclasses.dataclass(frozen=True)
class ModelMetrics:
  """One model's numbers on one slice (NaN where TFMA could not compute one).

  Attributes:
    auc: pooled AUC.
    gauc: member-weighted mean of per-member AUC (members with both labels).
    log_loss: mean binary cross-entropy.
  """
  auc: float
  gauc: float
  log_loss: float


@dataclasses.dataclass(frozen=True)
class SliceResult:
  """One slice's numbers.

  Attributes:
    name: `OVERALL` or a member-activity bucket (`0`, `1-5`, `6-20`, `>20`).
    example_count: evaluated examples in the slice (0: an empty slice).
    candidate: the personalised model's metrics, None for an empty slice.
    baseline: the baseline's metrics, None without a baseline or examples.
    gauc_gain_interval: the 95 % bootstrap interval (lower, upper) of the
      candidate's gAUC minus the baseline's, None without a baseline or examples.
  """
  name: str
  example_count: int
  candidate: Optional[ModelMetrics]
  baseline: Optional[ModelMetrics] = None
  gauc_gain_interval: Optional[Tuple[float, float]] = None


@dataclasses.dataclass(frozen=True)
class EvaluationSummary:
  """What the Evaluator found.

  Attributes:
    overall: the overall slice.
    slices: every member-activity slice in bucket order, empty ones included.
    blessed: whether the candidate passed every threshold.
    failures: one line per failed threshold (empty when blessed).
  """
  overall: SliceResult
  slices: List[SliceResult]
  blessed: bool
  failures: List[str]

  @property
  def has_baseline(self) -> bool:
    return self.overall.baseline is not None


def _slice_name(slice_key) -> Optional[str]:
  """`OVERALL`, an activity bucket, or None for a slice of another feature."""
  keys = list(slice_key.single_slice_keys)
  if not keys:
    return OVERALL
  if len(keys) == 1 and keys[0].column == activity_slices.ACTIVITY_FEATURE:
    return keys[0].bytes_value.decode()
  return None


def _values(metrics_for_slice) -> Dict[Tuple[str, str], float]:
  """(metric name, model name) -> value, for the non-diff metrics.

  A single-model evaluation names no model in its keys: that model is the
  candidate.
  """
  return {(kv.key.name, kv.key.model_name or evaluation_config.CANDIDATE):
          kv.value.double_value.value
          for kv in metrics_for_slice.metric_keys_and_values
          if not kv.key.is_diff and kv.value.HasField("double_value")}


def _failure_line(slice_key, failure) -> str:
  name = _slice_name(slice_key) or str(slice_key).replace("\n", " ")
  threshold = failure.metric_threshold
  value = failure.metric_value.double_value.value
  if failure.metric_key.is_diff:
    change = threshold.change_threshold
    if change.direction == tfma.MetricDirection.LOWER_IS_BETTER:
      return (f"{name}: {failure.metric_key.name} increase over the baseline {value:.4f} > "
              f"allowed {change.absolute.value:.4f}")
    return (f"{name}: {failure.metric_key.name} gain over the baseline {value:.4f} < "
            f"required {change.absolute.value:.4f}")
  bound = threshold.value_threshold.lower_bound.value
  if failure.metric_key.name == evaluation_config.GAUC_GAIN_LOWER_BOUND:
    return (f"{name}: gAUC gain over the baseline not beyond the noise: 95 % bootstrap "
            f"lower bound {value:.4f} <= {bound:.4f}")
  return f"{name}: {failure.metric_key.name} value {value:.4f} < required {bound:.4f}"


def _model_metrics(values: Dict[Tuple[str, str], float], model: str) -> Optional[ModelMetrics]:
  if (evaluation_config.AUC, model) not in values:
    return None
  nan = float("nan")
  auc = values[(evaluation_config.AUC, model)]
  if values.get((evaluation_config.MEAN_LABEL, model)) in (0.0, 1.0):
    auc = nan  # One class only: TFMA reports 0, but there is no AUC.
  return ModelMetrics(auc=auc,
                      gauc=values.get((evaluation_config.GAUC, model), nan),
                      log_loss=values.get((evaluation_config.LOG_LOSS, model), nan))


def _slice_result(name: str, values: Dict[Tuple[str, str], float]) -> SliceResult:
  candidate = evaluation_config.CANDIDATE
  interval = None
  if (evaluation_config.GAUC_GAIN_LOWER_BOUND, candidate) in values:
    interval = (values[(evaluation_config.GAUC_GAIN_LOWER_BOUND, candidate)],
                values[(evaluation_config.GAUC_GAIN_UPPER_BOUND, candidate)])
  return SliceResult(
      name=name,
      example_count=int(values[(evaluation_config.EXAMPLE_COUNT, candidate)]),
      candidate=_model_metrics(values, candidate),
      baseline=_model_metrics(values, evaluation_config.BASELINE),
      gauc_gain_interval=interval)


def read_evaluation(evaluation_uri: str) -> EvaluationSummary:
  """The summary of a finished Evaluator run.

  Args:
    evaluation_uri: the Evaluator's `evaluation` output directory.

  Returns:
    The summary.

  Raises:
    FileNotFoundError: when the directory holds no TFMA metrics or validation
      result (the Evaluator did not finish, or ran without thresholds).
  """
  if not tf.io.gfile.glob(f"{evaluation_uri}/metrics*"):
    raise FileNotFoundError(f"no TFMA metrics in {evaluation_uri}")
  if not tf.io.gfile.glob(f"{evaluation_uri}/validations*"):
    raise FileNotFoundError(f"no TFMA validation result in {evaluation_uri}")
  results = {}
  for metrics_for_slice in tfma.load_metrics(evaluation_uri):
    name = _slice_name(metrics_for_slice.slice_key)
    if name is not None:
      results[name] = _slice_result(name, _values(metrics_for_slice))
  if OVERALL not in results:
    raise ValueError(f"the TFMA metrics in {evaluation_uri} have no overall slice")
  validation = tfma.load_validation_result(evaluation_uri)
  failures = [_failure_line(per_slice.slice_key, failure)
              for per_slice in validation.metric_validations_per_slice
              for failure in per_slice.failures]
  failures += [f"slice missing from the data: {spec}".replace("\n", " ")
               for spec in validation.missing_slices]
  return EvaluationSummary(
      overall=results[OVERALL],
      slices=[results.get(s, SliceResult(name=s, example_count=0, candidate=None))
              for s in evaluation_config.ACTIVITY_SLICES],
      blessed=bool(validation.validation_ok),
      failures=failures)


def _number(value: Optional[float]) -> str:
  if value is None:
    return ""
  return "n/a" if math.isnan(value) else f"{value:.4f}"


_COLUMNS = ("auc", "gauc", "log_loss")
_HEADINGS = ("AUC", "gAUC", "log loss")


def _interval(interval: Optional[Tuple[float, float]]) -> str:
  if interval is None:
    return ""
  return "[" + ", ".join("n/a" if math.isnan(v) else f"{v:+.4f}" for v in interval) + "]"


def _model_cells(model: Optional[ModelMetrics]) -> List[str]:
  return [_number(getattr(model, column) if model else None) for column in _COLUMNS]


def report_lines(summary: EvaluationSummary) -> List[str]:
  """Human-readable lines: the headline, the per-slice table, the verdict.

  The table has a row for the overall slice and for every activity bucket,
  empty buckets included (their cells left blank), with AUC, gAUC and log
  loss of the personalised model and, with a baseline, of the baseline and the
  95 % interval of the gAUC gain.
  """
  overall, has_baseline = summary.overall, summary.has_baseline
  candidate = overall.candidate
  headline = (f"evaluation (TFMA, evaluation period, {overall.example_count} examples): "
              f"personalised gAUC {_number(candidate.gauc)}, AUC {_number(candidate.auc)}, "
              f"log loss {_number(candidate.log_loss)}")
  if has_baseline:
    headline += (f"; global baseline gAUC {_number(overall.baseline.gauc)}, AUC "
                 f"{_number(overall.baseline.auc)}, log loss {_number(overall.baseline.log_loss)}"
                 f"; gAUC gain 95 % interval {_interval(overall.gauc_gain_interval)}")
  models = ["personalised"] + (["baseline"] if has_baseline else [])
  header = [f"{'member activity':<16}", f"{'examples':>9}"]
  header += [f"{model[:4] + ' ' + heading:>14}" for model in models for heading in _HEADINGS]
  if has_baseline:
    header.append(f"{'gAUC gain 95 % interval':>26}")
  lines = [headline, "  " + " ".join(header)]
  for result in [overall] + summary.slices:
    row = [f"{result.name:<16}", f"{result.example_count:>9}"]
    cells = _model_cells(result.candidate)
    if has_baseline:
      cells += _model_cells(result.baseline)
    row += [f"{cell:>14}" for cell in cells]
    if has_baseline:
      row.append(f"{_interval(result.gauc_gain_interval):>26}")
    lines.append(("  " + " ".join(row)).rstrip())
  lines.append("blessed: " + ("yes" if summary.blessed else "no"))
  lines += [f"  failed: {failure}" for failure in summary.failures]
  return lines
