"""Runs the compared methods over several seeds on one split and collects the metrics.

Every method is scored on the split's evaluation tasks with their full
support, and again with each task's support truncated to its latest n
interactions for every n of the few-shot curve (`protocol.FEW_SHOT_SIZES`).
"""

import time
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence

import numpy as np

from limaml_keras import bootstrap
from limaml_keras import metrics
from limaml_keras.evaluation import gains as gains_lib
from limaml_keras.evaluation import methods as M
from limaml_keras.evaluation import protocol
from limaml_keras.evaluation.protocol import Split
from limaml_keras.tasks import Tasks

Log = Callable[[str], None]

#: Metrics kept per seed, overall, per segment and per few-shot n.
SCORES = ("gauc", "auc", "log_loss", "ece", "mean_prediction", "positive_rate")


def metric_record(scored: Mapping[str, np.ndarray]) -> Dict:
  """`metrics.evaluate_by_segment` of `methods.score` output."""
  return metrics.evaluate_by_segment(scored["member"], scored["label"], scored["score"],
                                     scored["support_size"])


def _slice_entry() -> Dict:
  return dict({name: [] for name in SCORES}, members=0, interactions=0)


def _add(target: Dict, record: Mapping) -> None:
  for name in SCORES:
    target[name].append(record[name])
  target["members"], target["interactions"] = record["members"], record["interactions"]


def _append(results: Dict, method: str, record: Dict, few_shot: Mapping[int, Dict],
            curve: Sequence[float]) -> None:
  entry = results.setdefault(method, dict(
      _slice_entry(), training_loss=[],
      segments={s: _slice_entry() for s in metrics.SEGMENTS},
      few_shot={str(n): _slice_entry() for n in few_shot}))
  _add(entry, record)
  entry["training_loss"].append(list(curve))
  for name, segment in record["segments"].items():
    _add(entry["segments"][name], segment)
  for n, n_record in few_shot.items():
    _add(entry["few_shot"][str(n)], n_record)


def run_methods(split: Split,
                hyperparameters: Mapping[str, M.Hyperparameters],
                seeds: Iterable[int],
                methods: Sequence[str] = M.METHODS,
                log: Optional[Log] = None,
                evaluation: Optional[Tasks] = None,
                few_shot_sizes: Sequence[int] = protocol.FEW_SHOT_SIZES,
                tensorboard_dir: Optional[str] = None,
                on_seed_done: Optional[Callable[[Dict, int], None]] = None) -> Dict:
  """Trains and evaluates every method for every seed on `split`.

  Every model trains on `methods.training_tasks` of `split.train` (the
  Trainer's recipe): every training interaction is a target exactly once.

  Args:
    split: the protocol's split (training data + evaluation tasks).
    hyperparameters: per method; `fine_tune` uses the `global` model, so its
      training fields are taken from `hyperparameters["global"]`.
    seeds: model seeds (initialisation and shuffling).
    methods: which of `methods.METHODS` to run.
    log: progress callback.
    evaluation: the tasks to score (default `split.evaluation`; e.g. only the
      held-out members).
    few_shot_sizes: support sizes n of the few-shot curve (empty: none).
    tensorboard_dir: when set, TensorBoard logs go there, one run per method
      and seed (`tensorboard_logs`).
    on_seed_done: called with `(results so far, seed)` after every seed (a
      long run can save what it has).

  Returns:
    `{method: {<score>: [per seed], "members", "interactions",
    "training_loss": [[per epoch] per seed], "seconds": [per seed],
    "segments": {segment: {<score>: [per seed], "members", "interactions"}},
    "few_shot": {str(n): {<score>: [per seed], "members", "interactions"}},
    "gauc_gain": {earlier method: gains.ScoreLog.gains record}}}` with
    `<score>` in `SCORES`; a slice with no examples has NaN scores and zero
    counts (it is kept, not dropped). "gauc_gain" (every method but the
    first) holds the method's paired gAUC gain over each method before it in
    `methods`, seed-averaged, with its member-bootstrap interval.
  """
  unknown = sorted(set(methods) - set(M.METHODS))
  if unknown:
    raise ValueError(f"unknown methods {unknown}; choose from {list(M.METHODS)}")
  log = log or (lambda message: None)
  evaluation = split.evaluation if evaluation is None else evaluation
  truncated = {n: protocol.truncate_support(evaluation, n) for n in few_shot_sizes}
  pre = split.preprocessor
  task_cache = {}
  results = {}
  score_log = gains_lib.ScoreLog()
  for seed in seeds:
    models = {}
    for method in methods:
      started = time.perf_counter()
      kind = M.TRAINED_AS[method]
      train_hp = hyperparameters[kind if kind == "global" else method]
      if kind not in models:
        cache_key = train_hp.training_task_settings()
        if cache_key not in task_cache:
          task_cache[cache_key] = M.training_tasks(train_hp, split.train)
        tasks = task_cache[cache_key]
        models[kind] = M.train(kind, train_hp, tasks, pre.num_items, pre.num_members, seed,
                               callbacks=_callbacks(tensorboard_dir, method, seed, kind, tasks))
      model, curve = models[kind]
      M.configure_for(method, model, hyperparameters[method])
      score_fn = M.query_scorer(model)  # one trace for every task set
      scored = M.score(model, evaluation, score_fn=score_fn)
      score_log.add(method, gains_lib.ALL, scored)
      record = metric_record(scored)
      few_shot = {}
      for n, tasks in truncated.items():
        scored = M.score(model, tasks, score_fn=score_fn)
        score_log.add(method, str(n), scored)
        few_shot[n] = metric_record(scored)
      _append(results, method, record, few_shot, curve)
      if tensorboard_dir:
        from limaml_keras.evaluation import tensorboard_logs  # pylint: disable=g-import-not-at-top
        tensorboard_logs.write_evaluation(tensorboard_dir, method, seed, few_shot)
      results[method].setdefault("seconds", []).append(round(time.perf_counter() - started, 2))
      log(f"seed {seed} {method:<19} gauc {record['gauc']:.4f} auc {record['auc']:.4f} "
          f"log loss {record['log_loss']:.4f} ({time.perf_counter() - started:.1f} s)")
    for method, by_baseline in score_log.gains(methods).items():
      results[method]["gauc_gain"] = by_baseline
    if on_seed_done:
      on_seed_done(results, seed)
  return results


def _callbacks(tensorboard_dir: Optional[str], method: str, seed: int, kind: str,
               tasks: Tasks) -> list:
  """TensorBoard callbacks of one training run (none without a log directory)."""
  if not tensorboard_dir:
    return []
  from limaml_keras.evaluation import tensorboard_logs  # pylint: disable=g-import-not-at-top
  callbacks = [tensorboard_logs.keras_callback(tensorboard_dir, method, seed)]
  if kind in ("limaml", "limaml_first_order"):
    callbacks.append(tensorboard_logs.MamlProbe(
        tensorboard_logs.run_dir(tensorboard_dir, method, seed), tasks))
  return callbacks


#: Column titles of the scores.
_TITLES = {"gauc": "gAUC", "auc": "AUC", "log_loss": "log loss", "ece": "ECE",
           "mean_prediction": "mean prediction", "positive_rate": "positive rate"}
#: Printed for a slice with no examples.
EMPTY = "–"


def mean_std(values: Sequence[float]):
  """`(mean, std)` over the finite values; std is the sample std (NaN for < 2 values).

  `(NaN, NaN)` when there is no finite value.
  """
  values = np.asarray([np.nan if v is None else v for v in values], np.float64)
  values = values[np.isfinite(values)]
  if not len(values):
    return (float("nan"), float("nan"))
  std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
  return (float(values.mean()), std)


def format_mean_std(pair) -> str:
  """`0.7012 ± 0.0002`; only the mean for one seed; `EMPTY` for no value."""
  mean, std = pair
  if not np.isfinite(mean):
    return EMPTY
  if not np.isfinite(std):
    return f"{mean:.4f}"
  return f"{mean:.4f} ± {std:.4f}"


def summary_tables(results: Mapping[str, Dict]) -> Sequence[Dict]:
  """The tables of a report, each `{"title", "columns", "rows"}` of formatted strings.

  One overall table (gAUC, AUC, log loss, ECE, mean prediction vs positive
  rate), then gAUC, AUC and log loss per member-activity segment and per
  few-shot support size n. Every slice is a column, empty ones included
  (shown as `EMPTY`); column titles carry the slice's member count.
  """
  if not results:
    return []
  first = next(iter(results.values()))
  overall = {"title": "Overall",
             "columns": ["method"] + [_TITLES[s] for s in SCORES],
             "rows": [[m] + [format_mean_std(mean_std(e[s])) for s in SCORES]
                      for m, e in results.items()]}
  tables = [overall]
  for group, label, prefix in (("segments", "member-activity segment (support size)", ""),
                               ("few_shot", "support truncated to the latest n", "n=")):
    slices = list(first.get(group, {}))
    if not slices:
      continue
    columns = ["method"] + [f"{prefix}{s} ({first[group][s]['members']} members)"
                            for s in slices]
    for score in ("gauc", "auc", "log_loss"):
      tables.append({"title": f"{_TITLES[score]} by {label}", "columns": columns,
                     "rows": [[m] + [format_mean_std(mean_std(e[group][s][score]))
                                     for s in slices] for m, e in results.items()]})
  return tables + gain_tables(results)


def format_gain(gain: Mapping) -> str:
  """`+0.0030 [+0.0011, +0.0049]`: a gain and its interval; `EMPTY` when undefined.

  A slice with too few members for an interval (`bootstrap.MIN_MEMBERS_FOR_INTERVAL`)
  shows the gain and says so.
  """
  finite = lambda key: gain.get(key) is not None and np.isfinite(gain[key])  # JSON: None
  if not gain or not finite("gain"):
    return EMPTY
  if not (finite("lower") and finite("upper")):
    return f"{gain['gain']:+.4f} ({gain['members']} member: no interval)"
  return f"{gain['gain']:+.4f} [{gain['lower']:+.4f}, {gain['upper']:+.4f}]"


def gain_tables(results: Mapping[str, Dict]) -> Sequence[Dict]:
  """Tables of the paired gAUC gains (`gains.ScoreLog.gains`), one row per pair of methods.

  Columns: overall and per member-activity segment; then per few-shot n.
  Every cell is the seed-averaged gain with its 95 % member-bootstrap
  interval: an interval that excludes 0 is a gain (or loss) beyond the noise.
  """
  pairs = [(m, b, g) for m, e in results.items() for b, g in e.get("gauc_gain", {}).items()]
  if not pairs:
    return []
  seeds = max((g.get("overall", {}).get("seeds", 0) for _, _, g in pairs), default=0)
  note = (f"paired, member AUC differences averaged over {seeds} seed(s), "
          f"{int(bootstrap.CONFIDENCE * 100)} % member-bootstrap interval")
  rows = [f"{m} − {b}" for m, b, _ in pairs]
  segment_table = {
      "title": f"gAUC gain by member-activity segment ({note})",
      "columns": ["pair", "overall"] + list(metrics.SEGMENTS),
      "rows": [[r, format_gain(g.get("overall"))] +
               [format_gain(g["segments"].get(s)) for s in metrics.SEGMENTS]
               for r, (_, _, g) in zip(rows, pairs)]}
  sizes = sorted({n for _, _, g in pairs for n in g.get("few_shot", {})}, key=int)
  if not sizes:
    return [segment_table]
  few_shot_table = {
      "title": f"gAUC gain by support truncated to the latest n ({note})",
      "columns": ["pair"] + [f"n={n}" for n in sizes],
      "rows": [[r] + [format_gain(g["few_shot"].get(n)) for n in sizes]
               for r, (_, _, g) in zip(rows, pairs)]}
  return [segment_table, few_shot_table]


def format_table(results: Mapping[str, Dict]) -> str:
  """`summary_tables` as Markdown."""
  blocks = []
  for table in summary_tables(results):
    lines = [f"**{table['title']}**", "",
             "| " + " | ".join(table["columns"]) + " |",
             "|---|" + "---|" * (len(table["columns"]) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in table["rows"]]
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks)
