"""One evaluation end to end: load → split by time → (tune) → train and score every method → report."""

import dataclasses
import time
from typing import Callable, Dict, Optional, Sequence

from limaml_keras.evaluation import datasets, protocol, report, runner, tuning
from limaml_keras.evaluation import tuned
from limaml_keras.evaluation import methods as M


def evaluate(dataset: str,
             output_dir: str,
             data_dir: Optional[str] = None,
             seeds: Sequence[int] = (0, 1, 2),
             methods: Sequence[str] = M.METHODS,
             tune: bool = False,
             epochs: Optional[int] = None,
             log: Callable[[str], None] = print) -> Dict:
  """Runs the comparison and writes `results.json` and `report.html` to `output_dir`.

  Args:
    dataset: one of `datasets.DATASETS`.
    output_dir: where the results go.
    data_dir: the dataset's files (MovieLens).
    seeds: model seeds.
    methods: methods to compare.
    tune: run the validation-split search first instead of `tuned.TUNED`.
    epochs: override every method's epochs (quick runs, smoke tests).
    log: progress callback.

  Returns:
    The report dict written to `results.json`.
  """
  started = time.perf_counter()
  frame, spec = datasets.load(dataset, data_dir)
  log(f"{dataset}: {len(frame)} interactions, {frame['member_id'].nunique()} members")
  hyperparameters = tuned.hyperparameters(dataset)
  trials = []
  if tune:
    validation = protocol.validation_split(frame, spec)
    log(f"tuning on the validation split (cutoff {validation.cutoff}, inside the training period)")
    hyperparameters, trials = tuning.tune(validation, methods, hyperparameters, log=log)
  if epochs is not None:
    hyperparameters = {m: hp.replace(epochs=epochs) for m, hp in hyperparameters.items()}
  split = protocol.time_split(frame, spec)
  evaluation = split.evaluation
  log(f"cutoff {split.cutoff}: {len(split.train['label'])} training interactions, "
      f"{len(evaluation)} members scored ({int(evaluation.cold_start.sum())} cold start)")
  results = runner.run_methods(split, hyperparameters, seeds, methods, log=log)
  record = {
      "dataset": dataset,
      "seeds": list(seeds),
      "results": results,
      "protocol": {
          "cutoff": split.cutoff,
          "training_interactions": int(len(split.train["label"])),
          "scored_members": int(len(evaluation)),
          "cold_start_members": int(evaluation.cold_start.sum()),
          "query_interactions": int(evaluation.query_sizes.sum()),
          "max_support": protocol.DEFAULT_MAX_SUPPORT,
          "members_without_query": int(evaluation.dropped_members.get("no_query", 0)),
      },
      "hyperparameters": {m: dataclasses.asdict(hp) for m, hp in hyperparameters.items()
                          if m in methods},
      "tuned_now": bool(tune),
      "tuning_trials": [{"method": m, "changes": c, "objective": o} for m, c, o in trials],
      "seconds": round(time.perf_counter() - started, 1),
  }
  report.write_results(record, output_dir)
  report.write_html(record, output_dir)
  log(runner.format_table(results))
  return record
