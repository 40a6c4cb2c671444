"""One evaluation end to end: load → split by a protocol → (tune) → train and score every method → report.

Protocols (`protocol_names.PROTOCOLS`; the splits are `protocol.time_split`
and `protocol.member_split`):

* `time`: one global cutoff; support = each member's latest pre-cutoff
  interactions, query = their post-cutoff ones.
* `member`: per member, the latest 20 % of interactions (at least one) are
  query, everything earlier is training data and support.
* `member-heldout`: as `member`, but a seeded 20 % of members
  (`HELD_OUT_SEED`, the same set for every model seed) are kept out of
  training; only they are scored, adapted from their own earlier
  interactions as new members are in production. Its results go to their
  own output directory; `results.json` names the protocol.

Tuning (`tune=True`) applies the same protocol inside the training data only.
"""

import dataclasses
import datetime
import os
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from limaml_keras import schema
from limaml_keras.evaluation import datasets, protocol, report, runner, tuning
from limaml_keras.evaluation import tuned
from limaml_keras.evaluation import methods as M
from limaml_keras.evaluation.protocol_names import PROTOCOLS
from limaml_keras.tasks import Tasks

#: Seed choosing the held-out members of `member-heldout` (fixed across model seeds).
HELD_OUT_SEED = 0
#: Where TensorBoard logs go, under the output directory, unless told otherwise.
TENSORBOARD_SUBDIR = "tensorboard"


def make_split(frame, spec: schema.FeatureSpec, protocol_name: str,
               validation: bool = False,
               max_support: int = protocol.DEFAULT_MAX_SUPPORT) -> Tuple[protocol.Split, Tasks]:
  """`(split, scored_tasks)` of `frame` under `protocol_name`.

  Args:
    frame: raw-schema interactions.
    spec: their feature spec.
    protocol_name: one of `PROTOCOLS`.
    validation: the protocol applied inside the training data (for tuning).
    max_support: support cap of the scored members (their latest interactions).

  Raises:
    ValueError: unknown protocol.
  """
  if protocol_name == "time":
    split = (protocol.validation_split if validation else protocol.time_split)(
        frame, spec, max_support=max_support)
    return split, split.evaluation
  if protocol_name not in PROTOCOLS:
    raise ValueError(f"unknown protocol {protocol_name!r}; choose from {list(PROTOCOLS)}")
  held_out = protocol.DEFAULT_HELD_OUT_FRACTION if protocol_name == "member-heldout" else 0.0
  build = protocol.member_validation_split if validation else protocol.member_split
  split = build(frame, spec, held_out_fraction=held_out, seed=HELD_OUT_SEED,
                max_support=max_support)
  if not held_out:
    return split, split.evaluation
  members = np.asarray(split.evaluation.member_ids).astype(str)
  scored = split.evaluation.select(np.isin(members, np.asarray(split.held_out_members, str)))
  return split, scored


def cutoff_date(cutoff: Optional[int]) -> Optional[str]:
  """The cutoff as an ISO UTC date-time (None for per-member protocols)."""
  if cutoff is None:
    return None
  return datetime.datetime.fromtimestamp(cutoff, datetime.timezone.utc).strftime(
      "%Y-%m-%d %H:%M:%S UTC")


def protocol_record(protocol_name: str, split: protocol.Split, scored: Tasks,
                    max_support: int) -> Dict:
  """What the split looks like, for `results.json` and the report.

  `max_support` is the support cap `make_split` was given (the split does not
  keep it), so the record states the cap the scores were computed with.
  """
  return {
      "name": protocol_name,
      "cutoff": split.cutoff,
      "cutoff_date": cutoff_date(split.cutoff),
      "training_interactions": int(len(split.train["label"])),
      "scored_members": int(len(scored)),
      "cold_start_members": int(scored.cold_start.sum()),
      "query_interactions": int(scored.query_sizes.sum()),
      "max_support": max_support,
      "members_without_query": int(split.evaluation.dropped_members.get("no_query", 0)),
      "held_out_members": len(split.held_out_members),
      "few_shot_sizes": list(protocol.FEW_SHOT_SIZES),
  }


def choose_hyperparameters(dataset: str, log: Callable[[str], None],
                           settings_from: Optional[str] = None) -> Dict[str, M.Hyperparameters]:
  """The settings an evaluation uses (`tuned.settings_for`).

  Args:
    dataset: the data's name; its tuned settings when it has them, else
      `tuned.FOR_NEW_DATA`'s, with a printed note.
    log: where the note goes.
    settings_from: a tuned dataset name, or `tuned.LIBRARY_DEFAULTS`, to use
      instead (an unknown one is an error).

  Raises:
    ValueError: `settings_from` has no tuned settings.
  """
  settings, source = tuned.settings_for(dataset, settings_from)
  if settings_from is None and source != dataset:
    log(f"note: no tuned settings for {dataset!r} (tuned: {sorted(tuned.TUNED)}); every method "
        f"uses the settings tuned on {source} (--tune searches from them on a validation split; "
        f"--settings-from NAME borrows another dataset's, --settings-from "
        f"{tuned.LIBRARY_DEFAULTS} takes the library defaults)")
  return settings


def apply_overrides(hyperparameters: Dict[str, M.Hyperparameters],
                    overrides: Sequence[str]) -> Dict[str, M.Hyperparameters]:
  """Applies `METHOD.FIELD=VALUE` overrides (`--set`) to the chosen settings.

  VALUE is a Python literal (`true`/`false` are accepted too; anything else
  that is not a literal is a string). A tuple field takes a comma list.

  Raises:
    ValueError: malformed override, unknown method or field.
  """
  fields = {f.name: f for f in dataclasses.fields(M.Hyperparameters)}
  chosen = dict(hyperparameters)
  for text in overrides:
    target, sep, raw = text.partition("=")
    method, dot, name = target.partition(".")
    if not sep or not dot:
      raise ValueError(f"--set {text!r}: expected METHOD.FIELD=VALUE")
    if method not in chosen:
      raise ValueError(f"--set {text!r}: unknown method {method!r}; choose from {list(chosen)}")
    if name not in fields:
      raise ValueError(f"--set {text!r}: unknown field {name!r}; fields: {sorted(fields)}")
    value = _literal(raw)
    if isinstance(getattr(chosen[method], name), tuple) and not isinstance(value, tuple):
      value = tuple(value) if isinstance(value, list) else (value,)
    chosen[method] = chosen[method].replace(**{name: value})
  return chosen


def _literal(raw: str):
  import ast  # pylint: disable=g-import-not-at-top
  lowered = raw.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  try:
    return ast.literal_eval(raw)
  except (ValueError, SyntaxError):
    return raw


def evaluate(dataset: str,
             output_dir: str,
             data_dir: Optional[str] = None,
             seeds: Sequence[int] = (0, 1, 2),
             methods: Sequence[str] = M.METHODS,
             tune: bool = False,
             epochs: Optional[int] = None,
             log: Callable[[str], None] = print,
             protocol_name: str = "time",
             data: Optional[Tuple] = None,
             settings_from: Optional[str] = None,
             tensorboard_dir: Optional[str] = "",
             overrides: Sequence[str] = (),
             max_support: int = protocol.DEFAULT_MAX_SUPPORT) -> Dict:
  """Runs the comparison and writes `results.json` and `report.html` to `output_dir`.

  Args:
    dataset: one of `datasets.DATASETS`, or a name for `data`.
    output_dir: where the results go.
    data_dir: the dataset's files (MovieLens).
    seeds: model seeds.
    methods: methods to compare.
    tune: run the validation-split search first instead of `tuned.TUNED`.
    epochs: override every method's epochs (quick runs, smoke tests).
    log: progress callback.
    protocol_name: one of `PROTOCOLS`.
    data: `(interactions, spec)` to evaluate instead of loading `dataset`.
    settings_from: tuned settings to use (default: `dataset`'s; when it has
      none, `tuned.FOR_NEW_DATA`'s with a printed note).
    tensorboard_dir: TensorBoard log root; "" (default) is
      `<output_dir>/tensorboard`, None writes no logs.
    overrides: `METHOD.FIELD=VALUE` changes applied last (`apply_overrides`).
    max_support: support cap of adaptation at evaluation (each scored
      member's latest interactions; the few-shot curve truncates below it).

  Returns:
    The report dict written to `results.json`.
  """
  started = time.perf_counter()
  if protocol_name not in PROTOCOLS:
    raise ValueError(f"unknown protocol {protocol_name!r}; choose from {list(PROTOCOLS)}")
  frame, spec = data if data is not None else datasets.load(dataset, data_dir)
  log(f"{dataset}: {len(frame)} interactions, {frame['member_id'].nunique()} members")
  hyperparameters = choose_hyperparameters(dataset, log, settings_from)
  trials = []
  if tune:
    validation, _ = make_split(frame, spec, protocol_name, validation=True,
                               max_support=max_support)
    log(f"tuning on a {protocol_name} validation split inside the training data")
    hyperparameters, trials = tuning.tune(validation, methods, hyperparameters, log=log)
  if epochs is not None:
    hyperparameters = {m: hp.replace(epochs=epochs) for m, hp in hyperparameters.items()}
  hyperparameters = apply_overrides(hyperparameters, overrides)
  split, scored = make_split(frame, spec, protocol_name, max_support=max_support)
  described = protocol_record(protocol_name, split, scored, max_support)
  when = f"cutoff {described['cutoff_date']}" if split.cutoff is not None else protocol_name
  log(f"{when}: {described['training_interactions']} training interactions, "
      f"{described['scored_members']} members scored ({described['cold_start_members']} "
      f"cold start)")
  if tensorboard_dir == "":
    tensorboard_dir = os.path.join(output_dir, TENSORBOARD_SUBDIR)
  done = []

  def record_of(results: Dict) -> Dict:
    return {
        "dataset": dataset,
        "seeds": list(done),
        "complete": len(done) == len(seeds),
        "results": results,
        "protocol": described,
        "hyperparameters": {m: dataclasses.asdict(hp) for m, hp in hyperparameters.items()
                            if m in methods},
        "tuned_now": bool(tune),
        "overrides": list(overrides),
        "tuning_trials": [{"method": m, "changes": c, "objective": o} for m, c, o in trials],
        "tensorboard": tensorboard_dir,
        "seconds": round(time.perf_counter() - started, 1),
    }

  def save_partial(results: Dict, seed: int) -> None:
    # results.json after every seed: an interrupted run keeps its finished seeds.
    done.append(seed)
    report.write_results(record_of(results), output_dir)

  results = runner.run_methods(split, hyperparameters, seeds, methods, log=log, evaluation=scored,
                               tensorboard_dir=tensorboard_dir, on_seed_done=save_partial)
  record = record_of(results)
  report.write_results(record, output_dir)
  report.write_html(record, output_dir)
  log(runner.format_table(results))
  return record
