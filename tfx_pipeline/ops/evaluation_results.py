"""Reads the Evaluator's TFMA results: overall and per-activity-slice AUC, and the verdict.

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
class SliceResult:
  """One slice's numbers.

  Attributes:
    name: `OVERALL` or a member-activity bucket (`0`, `1-5`, `6-20`, `>20`).
    example_count: evaluated examples in the slice.
    auc: the candidate's (personalised model's) AUC.
    baseline_auc: the baseline's AUC, None without a baseline.
  """
  name: str
  example_count: int
  auc: float
  baseline_auc: Optional[float]


@dataclasses.dataclass(frozen=True)
class EvaluationSummary:
  """What the Evaluator found.

  Attributes:
    overall: the overall slice.
    slices: the member-activity slices with examples, in bucket order.
    blessed: whether the candidate passed every threshold.
    failures: one line per failed threshold (empty when blessed).
  """
  overall: SliceResult
  slices: List[SliceResult]
  blessed: bool
  failures: List[str]


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
  kind = "gain over the baseline" if failure.metric_key.is_diff else "value"
  threshold = failure.metric_threshold
  bound = (threshold.change_threshold.absolute.value if failure.metric_key.is_diff
           else threshold.value_threshold.lower_bound.value)
  return (f"{name}: {failure.metric_key.name} {kind} "
          f"{failure.metric_value.double_value.value:.4f} < required {bound:.4f}")


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
    if name is None:
      continue
    values = _values(metrics_for_slice)
    baseline = values.get((evaluation_config.AUC, evaluation_config.BASELINE))
    results[name] = SliceResult(
        name=name,
        example_count=int(values[(evaluation_config.EXAMPLE_COUNT, evaluation_config.CANDIDATE)]),
        auc=values[(evaluation_config.AUC, evaluation_config.CANDIDATE)],
        baseline_auc=baseline)
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
      slices=[results[s] for s in evaluation_config.ACTIVITY_SLICES if s in results],
      blessed=bool(validation.validation_ok),
      failures=failures)


def _auc(value: Optional[float]) -> str:
  if value is None:
    return "-"
  return "n/a" if math.isnan(value) else f"{value:.4f}"


def report_lines(summary: EvaluationSummary) -> List[str]:
  """Human-readable lines: overall AUCs, the per-slice table, the verdict."""
  overall = summary.overall
  has_baseline = overall.baseline_auc is not None
  headline = f"evaluation (TFMA, evaluation period, {overall.example_count} examples): " \
             f"personalised AUC {_auc(overall.auc)}"
  if has_baseline:
    headline += f" vs global baseline {_auc(overall.baseline_auc)} " \
                f"({overall.auc - overall.baseline_auc:+.4f})"
  lines = [headline, f"  {'member activity':<16} {'examples':>9} {'personalised':>13}"
           + (f" {'baseline':>9}" if has_baseline else "")]
  for result in summary.slices:
    lines.append(f"  {result.name:<16} {result.example_count:>9} {_auc(result.auc):>13}"
                 + (f" {_auc(result.baseline_auc):>9}" if has_baseline else ""))
  lines.append("blessed: " + ("yes" if summary.blessed else "no"))
  lines += [f"  failed: {failure}" for failure in summary.failures]
  return lines
