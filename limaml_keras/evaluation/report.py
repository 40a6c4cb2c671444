"""Writes an evaluation's `results.json` and a self-contained `report.html` with plots."""

import base64
import html
import io
import json
import math
import os
from typing import Dict, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from limaml_keras import metrics  # pylint: disable=g-import-not-at-top
from limaml_keras.evaluation import runner  # pylint: disable=g-import-not-at-top


def _finite_or_none(value):
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def _json_ready(value):
  """NaN becomes null (JSON has no NaN); numpy scalars become Python numbers."""
  if isinstance(value, dict):
    return {str(k): _json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(v) for v in value]
  if isinstance(value, np.generic):
    value = value.item()
  return _finite_or_none(value)


def write_results(report: Mapping, output_dir: str) -> str:
  """Writes `results.json`; returns its path."""
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, "results.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(_json_ready(report), f, indent=2, allow_nan=False)
  return path


def merge_seed_runs(records: Sequence[Mapping]) -> Dict:
  """One record from runs that differ only in their seeds (e.g. seeds run in parallel).

  Every per-seed list (scores, training curves, seconds) is concatenated in
  the order of `records`; everything else must be equal. The paired gains
  ("gauc_gain") are dropped: they are computed from the runs' scores, which
  the records do not keep.

  Raises:
    ValueError: the runs differ in anything but their seeds, or share a seed.
  """
  if not records:
    raise ValueError("no run to merge")
  first = records[0]
  same = ("dataset", "protocol", "hyperparameters", "overrides")
  for other in records[1:]:
    for key in same:
      if other.get(key) != first.get(key):
        raise ValueError(f"runs differ in {key!r}; only runs that differ in their seeds merge")
    if set(other["results"]) != set(first["results"]):
      raise ValueError("runs differ in their methods")
  seeds = [s for r in records for s in r["seeds"]]
  if len(set(seeds)) != len(seeds):
    raise ValueError(f"runs share seeds: {seeds}")

  def merge(values, path):
    head = values[0]
    if isinstance(head, dict):
      return {k: merge([v[k] for v in values], f"{path}.{k}") for k in head}
    if isinstance(head, list):
      return [x for v in values for x in v]
    if any(v != head for v in values[1:]):
      raise ValueError(f"runs differ at {path}: {values}")
    return head

  merged = dict(first)
  merged["seeds"] = seeds
  merged["results"] = merge([_without_gains(r["results"]) for r in records], "results")
  merged["complete"] = all(r.get("complete", True) for r in records)
  merged["seconds"] = round(sum(r.get("seconds", 0.0) for r in records), 1)
  merged["merged_from_runs"] = len(records)
  return merged


def _without_gains(results: Mapping[str, Dict]) -> Dict[str, Dict]:
  return {m: {k: v for k, v in e.items() if k != "gauc_gain"} for m, e in results.items()}


def join_method_runs(base: Mapping, other: Mapping, methods: Sequence[str],
                     names: Sequence[str] = ("base", "other")) -> Dict:
  """`base` with the results of `methods` taken from `other` (e.g. one method rerun).

  Both runs must share dataset, protocol (split, cap, scored members) and
  seeds, so every method is scored on the same query interactions. The
  joined record says which run each method comes from (`joined_from`, by
  `names`, e.g. the two output directories). The paired gains ("gauc_gain")
  are dropped, as in `merge_seed_runs`.

  Raises:
    ValueError: the runs differ in dataset, protocol or seeds, or `other`
      lacks one of `methods`.
  """
  for key in ("dataset", "protocol", "seeds"):
    if base.get(key) != other.get(key):
      raise ValueError(f"runs differ in {key!r}; only runs of the same split and seeds join")
  missing = [m for m in methods if m not in other["results"]]
  if missing:
    raise ValueError(f"the other run has no results for {missing}")
  joined = dict(base)
  joined["results"] = {m: v for m, v in _without_gains(base["results"]).items()
                       if m not in methods}
  joined["results"].update(_without_gains({m: other["results"][m] for m in methods}))
  joined["hyperparameters"] = dict(base.get("hyperparameters", {}))
  joined["hyperparameters"].update({m: other["hyperparameters"][m] for m in methods
                                    if m in other.get("hyperparameters", {})})
  joined["joined_from"] = {m: names[1] if m in methods else names[0] for m in joined["results"]}
  return joined


def write_few_shot_png(results: Mapping[str, Dict], path: str) -> str:
  """Writes the few-shot curve of `report.html` (gAUC and log loss vs n) as a PNG; returns `path`."""
  with open(path, "wb") as f:
    f.write(base64.b64decode(_few_shot_plot(results)))
  return path


def _png(figure) -> str:
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
  plt.close(figure)
  return base64.b64encode(buffer.getvalue()).decode("ascii")


def _segment_plot(results: Mapping[str, Dict], score: str, title: str) -> str:
  """Bars of `score` (mean ± std over seeds) per member-activity segment and overall."""
  figure, axis = plt.subplots(figsize=(8, 4))
  names = list(metrics.SEGMENTS) + ["all"]
  width = 0.8 / max(len(results), 1)
  for i, (method, entry) in enumerate(results.items()):
    per_segment = [entry["segments"][s][score] for s in metrics.SEGMENTS] + [entry[score]]
    means, stds = zip(*map(runner.mean_std, per_segment))
    stds = np.nan_to_num(stds)  # no error bar with one seed or where a segment has no value
    axis.bar(np.arange(len(names)) + i * width, means, width, yerr=stds, label=method, capsize=2)
  axis.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
  first = next(iter(results.values()))
  axis.set_xticklabels([f"{s}\n({first['segments'][s]['members']} members)"
                        if s in first["segments"] else s for s in names])
  axis.set_xlabel("member activity (support interactions)")
  axis.set_ylabel(f"query {title} (mean ± std over seeds)")
  finite = [v for e in results.values() for v in e[score] if v is not None and math.isfinite(v)]
  if finite:
    axis.set_ylim(max(0.0, min(finite) - 0.12), min(1.0, max(finite) + 0.06))
  axis.legend(fontsize=8, ncol=3)
  axis.set_title(f"{title} by member-activity segment")
  return _png(figure)


def _few_shot_plot(results: Mapping[str, Dict]) -> str:
  """gAUC and log loss against the support size n, one line per method."""
  figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for method, entry in results.items():
    sizes = sorted(entry.get("few_shot", {}), key=int)
    if not sizes:
      continue
    for axis, score in zip(axes, ("gauc", "log_loss")):
      means, stds = map(np.asarray, zip(*(runner.mean_std(entry["few_shot"][n][score])
                                          for n in sizes)))
      axis.errorbar(np.arange(len(sizes)), means, yerr=np.nan_to_num(stds), marker="o",
                    capsize=2, label=method)
      axis.set_xticks(np.arange(len(sizes)))
      axis.set_xticklabels(sizes)
  for axis, label in zip(axes, ("query gAUC", "query log loss")):
    axis.set_xlabel("support interactions used (the member's latest n)")
    axis.set_ylabel(label)
  axes[0].legend(fontsize=8)
  axes[0].set_title("Few-shot curve: gAUC vs n")
  axes[1].set_title("Calibration: log loss vs n")
  return _png(figure)


def _curve_plot(results: Mapping[str, Dict]) -> str:
  figure, axis = plt.subplots(figsize=(8, 3.5))
  for method, entry in results.items():
    curves = [c for c in entry["training_loss"] if c]
    if not curves:
      continue
    length = min(len(c) for c in curves)
    mean = np.mean([c[:length] for c in curves], axis=0)
    axis.plot(np.arange(1, length + 1), mean, marker="o", label=method)
  axis.set_xlabel("epoch")
  axis.set_ylabel("training loss (query loss for MAML)")
  axis.set_title("Training curves (mean over seeds)")
  axis.legend(fontsize=8)
  return _png(figure)


def _tables_html(results: Mapping[str, Dict]) -> str:
  blocks = []
  for table in runner.summary_tables(results):
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table["columns"])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                   for row in table["rows"])
    blocks.append(f"<h3>{html.escape(table['title'])}</h3><table><tr>{head}</tr>{body}</table>")
  return "\n".join(blocks)


_PROTOCOL_TEXT = {
    "time": "Time protocol: train before one global cutoff, adapt on each member's latest "
            "pre-cutoff interactions, score their post-cutoff interactions.",
    "member": "Member protocol: each member's latest 20 % of interactions (at least one) are "
              "scored; everything earlier is training data and the member's support.",
    "member-heldout": "Held-out members: the member protocol with a seeded 20 % of members "
                      "kept out of training; only they are scored, adapted from their own "
                      "earlier interactions.",
}


def _image(alt: str, data: str) -> str:
  return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def write_html(report: Mapping, output_dir: str) -> str:
  """Writes `report.html` (plots embedded, no external files); returns its path."""
  results = report["results"]
  described = dict(report.get("protocol", {}))
  name = described.get("name", "time")
  protocol_items = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
                           for k, v in described.items())
  seeds = report["seeds"]
  spread = ("mean ± sample std over seeds" if len(seeds) > 1 else
            "one seed: no spread is shown")
  few_shot = any(e.get("few_shot") for e in results.values())
  page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>LiMAML evaluation: {html.escape(report['dataset'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>LiMAML vs baselines on {html.escape(report['dataset'])} ({html.escape(name)} protocol)</h1>
<p>Seeds: {html.escape(str(seeds))} ({spread}). {html.escape(_PROTOCOL_TEXT.get(name, ''))}
gAUC: each member's AUC, weighted by their scored interactions. ECE: expected calibration error
over {metrics.CALIBRATION_BINS} probability bins. "{runner.EMPTY}": a slice with no examples.</p>
<ul>{protocol_items}</ul>
{_image("gAUC by segment", _segment_plot(results, "gauc", "gAUC"))}
{_image("AUC by segment", _segment_plot(results, "auc", "AUC"))}
{_image("few-shot curve", _few_shot_plot(results)) if few_shot else ""}
<h2>Results ({spread})</h2>{_tables_html(results)}
{_image("training curves", _curve_plot(results))}
<h2>Hyper-parameters</h2>
<pre>{html.escape(json.dumps(report.get('hyperparameters', {}), indent=1))}</pre>
</body></html>"""
  path = os.path.join(output_dir, "report.html")
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)
  return path
