"""Writes an evaluation's `results.json` and a self-contained `report.html` with plots."""

import base64
import html
import io
import json
import math
import os
from typing import Dict, Mapping

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


def _png(figure) -> str:
  buffer = io.BytesIO()
  figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
  plt.close(figure)
  return base64.b64encode(buffer.getvalue()).decode("ascii")


def _segment_plot(results: Mapping[str, Dict]) -> str:
  figure, axis = plt.subplots(figsize=(8, 4))
  names = list(metrics.SEGMENTS) + ["all"]
  width = 0.8 / max(len(results), 1)
  for i, (method, entry) in enumerate(results.items()):
    per_segment = [entry["segments"][s]["auc"] for s in metrics.SEGMENTS] + [entry["auc"]]
    means, stds = zip(*map(runner.mean_std, per_segment))
    stds = np.nan_to_num(stds)  # no error bar where a segment has no value
    axis.bar(np.arange(len(names)) + i * width, means, width, yerr=stds, label=method, capsize=2)
  axis.set_xticks(np.arange(len(names)) + 0.4 - width / 2)
  first = next(iter(results.values()))
  axis.set_xticklabels([f"{s}\n({first['segments'][s]['members']} members)"
                        if s in first["segments"] else s for s in names])
  axis.set_xlabel("member activity (support interactions)")
  axis.set_ylabel("query AUC (mean ± std over seeds)")
  finite = [v for e in results.values() for v in e["auc"] if v is not None and math.isfinite(v)]
  if finite:
    axis.set_ylim(max(0.0, min(finite) - 0.12), min(1.0, max(finite) + 0.06))
  axis.legend(fontsize=8, ncol=3)
  axis.set_title("AUC by member-activity segment")
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


def _table_html(results: Mapping[str, Dict]) -> str:
  rows = runner.summary_rows(results)
  columns = [c for c in rows[0] if c != "method"]
  head = "".join(f"<th>{html.escape(c)}</th>" for c in ["method"] + columns)
  body = []
  for row in rows:
    cells = "".join(f"<td>{runner.format_mean_std(row[c])}</td>" for c in columns)
    body.append(f"<tr><td>{html.escape(row['method'])}</td>{cells}</tr>")
  return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def write_html(report: Mapping, output_dir: str) -> str:
  """Writes `report.html` (plots embedded, no external files); returns its path."""
  results = report["results"]
  protocol_items = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>"
                           for k, v in report.get("protocol", {}).items())
  page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>LiMAML evaluation: {html.escape(report['dataset'])}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>LiMAML vs baselines on {html.escape(report['dataset'])}</h1>
<p>Seeds: {html.escape(str(report['seeds']))}. Time-based protocol: train before the cutoff,
adapt on each member's latest pre-cutoff interactions, score their post-cutoff interactions.</p>
<ul>{protocol_items}</ul>
<img alt="AUC by segment" src="data:image/png;base64,{_segment_plot(results)}">
<h2>Summary (mean ± std over seeds)</h2>{_table_html(results)}
<img alt="training curves" src="data:image/png;base64,{_curve_plot(results)}">
<h2>Hyper-parameters (tuned on a validation split inside the training period)</h2>
<pre>{html.escape(json.dumps(report.get('hyperparameters', {}), indent=1))}</pre>
</body></html>"""
  path = os.path.join(output_dir, "report.html")
  with open(path, "w", encoding="utf-8") as f:
    f.write(page)
  return path
