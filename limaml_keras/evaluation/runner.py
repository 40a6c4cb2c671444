"""Runs the compared methods over several seeds on one split and collects the metrics."""

import time
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from limaml_keras import metrics
from limaml_keras.evaluation import methods as M
from limaml_keras.evaluation.protocol import Split

Log = Callable[[str], None]


def metric_record(scored: Mapping[str, np.ndarray]) -> Dict:
  """AUC and gAUC overall and by member-activity segment of `methods.score` output."""
  return metrics.evaluate_by_segment(scored["member"], scored["label"], scored["score"],
                                     scored["support_size"])


def _append(results: Dict, method: str, record: Dict, curve: Sequence[float]) -> None:
  entry = results.setdefault(method, {
      "auc": [], "gauc": [], "training_loss": [],
      "segments": {s: {"auc": [], "gauc": [], "members": 0, "interactions": 0}
                   for s in metrics.SEGMENTS}})
  entry["auc"].append(record["auc"])
  entry["gauc"].append(record["gauc"])
  entry["training_loss"].append(list(curve))
  for name, segment in record["segments"].items():
    target = entry["segments"][name]
    target["auc"].append(segment["auc"])
    target["gauc"].append(segment["gauc"])
    target["members"], target["interactions"] = segment["members"], segment["interactions"]


def run_methods(split: Split,
                hyperparameters: Mapping[str, M.Hyperparameters],
                seeds: Iterable[int],
                methods: Sequence[str] = M.METHODS,
                log: Optional[Log] = None) -> Dict:
  """Trains and evaluates every method for every seed on `split`.

  Args:
    split: the protocol's split (training period + evaluation tasks).
    hyperparameters: per method; `fine_tune` uses the `global` model, so its
      training fields are taken from `hyperparameters["global"]`.
    seeds: model seeds (initialisation and shuffling).
    methods: which of `methods.METHODS` to run.
    log: progress callback.

  Returns:
    `{method: {"auc": [per seed], "gauc": [...], "training_loss": [[per
    epoch] per seed], "segments": {segment: {"auc", "gauc", "members",
    "interactions"}}, "seconds": float}}`.
  """
  unknown = sorted(set(methods) - set(M.METHODS))
  if unknown:
    raise ValueError(f"unknown methods {unknown}; choose from {list(M.METHODS)}")
  log = log or (lambda message: None)
  pre = split.preprocessor
  task_cache = {}
  results = {}
  for seed in seeds:
    models = {}
    for method in methods:
      started = time.perf_counter()
      kind = M.TRAINED_AS[method]
      train_hp = hyperparameters[kind if kind == "global" else method]
      if kind not in models:
        cache_key = (kind.startswith("limaml"), train_hp.window, train_hp.task_history)
        if cache_key not in task_cache:
          task_cache[cache_key] = M.training_tasks(kind, train_hp, split.train)
        models[kind] = M.train(kind, train_hp, task_cache[cache_key], pre.num_items,
                               pre.num_members, seed)
      model, curve = models[kind]
      M.configure_for(method, model, hyperparameters[method])
      record = metric_record(M.score(model, split.evaluation))
      _append(results, method, record, curve)
      results[method].setdefault("seconds", []).append(round(time.perf_counter() - started, 2))
      log(f"seed {seed} {method:<19} auc {record['auc']:.4f} gauc {record['gauc']:.4f} "
          f"({time.perf_counter() - started:.1f} s)")
  return results


def summary_rows(results: Mapping[str, Dict]) -> Sequence[Dict]:
  """Mean and std over seeds of AUC/gAUC overall and per segment, one row per method."""
  rows = []
  for method, entry in results.items():
    row = {"method": method}
    for metric in ("auc", "gauc"):
      row[metric] = mean_std(entry[metric])
    for name, segment in entry["segments"].items():
      row[f"auc[{name}]"] = mean_std(segment["auc"])
    rows.append(row)
  return rows


def mean_std(values: Sequence[float]):
  """`(mean, std)` over the finite values (NaN, NaN when there are none)."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  if not len(values):
    return (float("nan"), float("nan"))
  return (float(values.mean()), float(values.std()))


def format_mean_std(pair) -> str:
  """`0.7012 ± 0.0002`."""
  return f"{pair[0]:.4f} ± {pair[1]:.4f}"


def format_table(results: Mapping[str, Dict]) -> str:
  """A Markdown table of `summary_rows` (mean ± std over seeds)."""
  rows = summary_rows(results)
  if not rows:
    return ""
  columns = [c for c in rows[0] if c != "method"]
  lines = ["| method | " + " | ".join(columns) + " |",
           "|---|" + "---|" * len(columns)]
  for row in rows:
    cells = [format_mean_std(row[c]) for c in columns]
    lines.append(f"| {row['method']} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
