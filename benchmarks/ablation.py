"""Ablation of the LiMAML model changes on a protocol's validation split.

Prints one JSON object: for every variant, gAUC (member-weighted), AUC and log
loss of the query interactions — overall (support up to `--max-support`) and per
support size n of the few-shot curve — per seed, with mean and std.

Everything is measured on a validation split: with `--protocol member` (the
default) `protocol.member_validation_split`, the member protocol applied to the
training data only (each member's latest 20 % and the held-out members of the
real split are removed first); with `--protocol time`
`protocol.validation_split`, the time protocol's cutoff applied to its
training period (its members new after the inner cutoff are the cold-start
segment "0"). Nothing here looks at the evaluation query part.

A variant is `METHOD[+CHANGE...]`, e.g. `limaml+items+bilinear`: the method's
tuned settings (`evaluation.configs`) with the named changes applied
(`CHANGES`; a change that names a field of the `global` model also applies to
`fine_tune`, which reuses it). `V@K` scores LiMAML variant V's trained model
with K inner steps at evaluation (e.g. `limaml limaml@1 limaml@0`: one model
per seed, three adaptations).

Usage:
  python benchmarks/ablation.py --dataset movielens-100k \
      --data-dir /work/shared/data/movielens-100k --seeds 0 1 \
      --variants global fine_tune id_embedding limaml limaml+items+bilinear
  python benchmarks/ablation.py --csv interactions.csv --spec features.json \
      --settings-from movielens-100k --variants global limaml limaml+noitems
  python benchmarks/ablation.py --protocol time --seeds 0 1 2 --variants global limaml
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # pylint: disable=g-import-not-at-top

from limaml_keras import metrics  # pylint: disable=g-import-not-at-top
from limaml_keras import schema  # pylint: disable=g-import-not-at-top
from limaml_keras.evaluation import datasets, protocol  # pylint: disable=g-import-not-at-top
from limaml_keras.evaluation import tuned as configs  # pylint: disable=g-import-not-at-top
from limaml_keras.evaluation import methods as M  # pylint: disable=g-import-not-at-top

#: Named changes a variant can stack on its method's settings.
CHANGES = {
    "items": {"support_items": "shared"},       # Meta Block reads support item ids (shared table)
    "ownitems": {"support_items": "own"},       # ... with its own item table
    "noitems": {"support_items": "none"},       # the Meta Block does not read support items
    "bilinear": {"meta_item_interaction": True},  # (W e)·item term in the Global Block logit
    "nobilinear": {"meta_item_interaction": False},
    "offset": {"meta_offset": True},             # last meta dimension: a member-level logit offset
    # The bilinear term reads the member's own evidence (meta embedding − no-support prior).
    "evidence": {"bilinear_evidence": True},
    # ... and the tower reads it too (a member with no evidence is ordered from features alone).
    "evidtower": {"bilinear_evidence": True, "evidence_in_tower": True},
    "notower": {"meta_in_tower": False},         # meta embedding only in the bilinear term
    "sizes": {"train_support_sizes": (0, 1, 2, 5, 10, 20)},  # sampled support sizes, 0 included
    "sizes50": {"train_support_sizes": (0, 1, 2, 5, 10, 20, 50)},  # ... up to the evaluation cap
    "sizes1": {"train_support_sizes": (1, 2, 5, 10, 20)},    # ... without zero-support tasks
    # ... zero-support tasks 3 in 9 instead of 1 in 7 (the member-ID row must score alone more often)
    "sizes0x3": {"train_support_sizes": (0, 0, 0, 1, 2, 5, 10, 20, 50)},
    "id": {"member_id_embedding": True},         # the paper's setting: ID embedding + meta embedding
    "noid": {"member_id_embedding": False},      # ... without it (the tuned LiMAML before round 7)
    "idl2e3": {"id_l2": 1e-3},                   # stronger L2 on the member-ID rows a batch uses
    "idl2e2": {"id_l2": 1e-2},
    # Member-ID dropout: a share of training tasks is scored as an unknown member (row 0), so the
    # features-and-support path of new members is trained too.
    "iddrop1": {"member_id_dropout": 0.1},
    "iddrop3": {"member_id_dropout": 0.3},
    "iddrop5": {"member_id_dropout": 0.5},
    # The fine-tuning baseline's adaptation learning rate (its steps: `fine_tune_steps`).
    "ftlr01": {"fine_tune_lr": 0.1},
    "ftlr03": {"fine_tune_lr": 0.3},
    "hist": {"use_history": True},
    "hist50": {"task_history": 50, "window": 20},  # history tasks: support = previous 50, query = 20
    "hist20": {"task_history": 20, "window": 20},
    "hist100": {"task_history": 100, "window": 20},  # ... support = previous 100
    # Shorter query windows of history tasks: members with few training interactions get tasks
    # with a support (a member's first window is their only cold-start task).
    "win10": {"window": 10},
    "win5": {"window": 5},
    "sizes100": {"train_support_sizes": (0, 1, 2, 5, 10, 20, 50, 100)},
    "nohist": {"use_history": False},
    # The inner loop moves only the member-level offset (needs `offset`): it calibrates a member's
    # level and leaves the ordering to the prior, the Meta Block's read of the support and the ID row.
    "offsetonly": {"adapt_offset_only": True},
    "steps0": {"inner_steps": 0},               # no inner loop: the Meta Block reads the support only
    "steps1": {"inner_steps": 1},
    "steps2": {"inner_steps": 2},
    "steps5": {"inner_steps": 5},
    "lrmax1": {"max_inner_lr": 1.0},
    "lrmax03": {"max_inner_lr": 0.3},
    "fixedlr": {"learn_inner_lr": False},
    "dim16": {"embedding_dim": 16},
    "dim32": {"embedding_dim": 32},
    "e3": {"epochs": 3},
    "e4": {"epochs": 4},
    "e8": {"epochs": 8},
    "e10": {"epochs": 10},
    "e20": {"epochs": 20},
    "lr3e3": {"learning_rate": 3e-3},
    "idim32": {"item_embedding_dim": 32},
    "idim64": {"item_embedding_dim": 64},
    # Within-member pairwise ranking term (`ModelConfig.ranking_loss_weight`): in the training
    # objective of every model (LiMAML: the outer query loss) ...
    "rank03": {"ranking_loss_weight": 0.3},
    "rank1": {"ranking_loss_weight": 1.0},
    "rank3": {"ranking_loss_weight": 3.0},
    # ... and in the support loss of the inner loop (`inner_ranking_loss_weight`).
    "irank03": {"inner_ranking_loss_weight": 0.3},
    "irank1": {"inner_ranking_loss_weight": 1.0},
    "irank3": {"inner_ranking_loss_weight": 3.0},
    # Shrinkage of small supports in the inner loop: support loss x n / (n + c).
    "pc0": {"inner_pseudo_count": 0.0},
    # The un-adapted model's query loss joins MAML's outer loss with this weight.
    "cold03": {"unadapted_loss_weight": 0.3},
    "cold1": {"unadapted_loss_weight": 1.0},
    # ... and the query loss of each task scored as a new member (no support, unknown id).
    "new03": {"new_member_loss_weight": 0.3},
    "new1": {"new_member_loss_weight": 1.0},
    # An exponential moving average of the weights ends training (Keras' use_ema).
    "ema99": {"ema_momentum": 0.99},
    "ema995": {"ema_momentum": 0.995},
    # A learned pseudo-count gates how far n support interactions move the Meta Block's output.
    "gate": {"support_gate": True},
    "nogate": {"support_gate": False},
    # ... starting from a pseudo-count of 1 / 3 / 10 / 30 / 100 (`support_gate_count`).
    "gatec1": {"support_gate_count": 1.0},
    "gatec3": {"support_gate_count": 3.0},
    "gatec10": {"support_gate_count": 10.0},
    "gatec30": {"support_gate_count": 30.0},
    "gatec100": {"support_gate_count": 100.0},
    "pc2": {"inner_pseudo_count": 2.0},
    "pc5": {"inner_pseudo_count": 5.0},
    "pc10": {"inner_pseudo_count": 10.0},
    "pc20": {"inner_pseudo_count": 20.0},
}


def parse_variant(variant: str, tuned):
  """`(method, train hyper-parameters, evaluation hyper-parameters)` of a variant name.

  A trailing `@K` (e.g. `limaml@1`) scores a LiMAML variant with K inner steps
  at evaluation; it is trained as the variant without the suffix (one model for
  both).
  """
  name, at, steps = variant.partition("@")
  method, *changes = name.split("+")
  if method not in M.METHODS:
    raise ValueError(f"variant {variant!r}: unknown method {method!r}; choose from {M.METHODS}")
  unknown = [c for c in changes if c not in CHANGES]
  if unknown:
    raise ValueError(f"variant {variant!r}: unknown changes {unknown}; choose from {sorted(CHANGES)}")
  updates = {}
  for change in changes:
    updates.update(CHANGES[change])
  trained_as = M.TRAINED_AS[method]
  train_hp = tuned[trained_as if trained_as == "global" else method].replace(**updates)
  eval_hp = tuned[method].replace(**updates)
  if at:
    if not M.adapts_with_maml(method) or not steps.isdigit():
      raise ValueError(f"variant {variant!r}: '@K' takes a whole number K of inner steps "
                       f"at evaluation, on a LiMAML method")
    eval_hp = eval_hp.replace(inner_steps=int(steps))
  return method, train_hp, eval_hp


def measure(scored, by_segment: bool = False) -> dict:
  """`metrics.evaluate_by_segment` of scored interactions, flattened for `summarise`.

  gAUC, AUC, log loss, ECE and calibration overall; with `by_segment`, also
  gAUC per member-activity segment (`gauc_<segment>`, NaN when empty).
  """
  summary = metrics.evaluate_by_segment(scored["member"], scored["label"], scored["score"],
                                        scored["support_size"])
  record = {k: v for k, v in summary.items() if k != "segments"}
  if by_segment:
    record.update({f"gauc_{segment}": part["gauc"]
                   for segment, part in summary["segments"].items()})
  return record


def evaluate(model, tasks, sizes) -> dict:
  """Metrics with the full support and with support truncated to each n (one traced scorer)."""
  score_fn = M.query_scorer(model)
  record = {"all": measure(M.score(model, tasks, score_fn=score_fn), by_segment=True)}
  for n in sizes:
    record[str(n)] = measure(M.score(model, protocol.truncate_support(tasks, n), score_fn=score_fn))
  return record


def summarise(per_seed) -> dict:
  out = {}
  for key in per_seed[0]:
    out[key] = {}
    for metric in per_seed[0][key]:
      values = np.array([r[key][metric] for r in per_seed], np.float64)
      out[key][metric] = {"mean": float(values.mean()), "std": float(values.std()),
                          "values": [float(v) for v in values]}
  return out


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--dataset", default="movielens-100k", choices=datasets.DATASETS)
  parser.add_argument("--data-dir", default="/work/shared/data/movielens-100k")
  parser.add_argument("--csv", default=None,
                      help="a raw-schema CSV instead of --dataset (the `limaml evaluate --data` "
                           "rules); its feature spec is --spec")
  parser.add_argument("--spec", default=None, help="feature spec JSON of --csv")
  parser.add_argument("--settings-from", default=None,
                      help="the tuned settings the variants start from, or 'defaults' "
                      "(default: --dataset's; with --csv, the settings tuned on real data, "
                      "as `limaml evaluate --data`)")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
  parser.add_argument("--variants", nargs="+", default=["global", "fine_tune", "id_embedding",
                                                        "limaml"])
  parser.add_argument("--protocol", default="member", choices=("member", "time"),
                      help="whose validation split: the member protocol's or the time protocol's")
  parser.add_argument("--held-out", type=float, default=0.0,
                      help="share of members held out of training (the held-out-members variant "
                           "of --protocol member)")
  parser.add_argument("--few-shot", type=int, nargs="*", default=list(protocol.FEW_SHOT_SIZES))
  parser.add_argument("--epochs", type=int, default=None, help="override every variant's epochs")
  parser.add_argument("--max-support", type=int, default=protocol.DEFAULT_MAX_SUPPORT,
                      help="support cap of the scored members (their latest interactions)")
  args = parser.parse_args(argv)
  if args.protocol == "time" and args.held_out:
    parser.error("--held-out is a variant of --protocol member")

  started = time.perf_counter()
  if args.csv:
    if not args.spec:
      parser.error("--csv needs --spec (its feature spec JSON)")
    spec = schema.load_spec(args.spec)
    frame, notes = datasets.load_csv([args.csv], spec)  # as of now, as `limaml evaluate --data`
    for note in notes:
      print(f"note: {note}", file=sys.stderr)
  else:
    frame, spec = datasets.load(args.dataset, args.data_dir)
  if args.protocol == "time":
    split = protocol.validation_split(frame, spec, max_support=args.max_support)
  else:
    split = protocol.member_validation_split(frame, spec, held_out_fraction=args.held_out,
                                            max_support=args.max_support)
  # A --csv without --settings-from gets what `limaml evaluate --data` gives it.
  tuned, settings_source = configs.settings_for(None if args.csv else args.dataset,
                                                args.settings_from)
  parsed = {v: parse_variant(v, tuned) for v in args.variants}
  if args.epochs is not None:
    parsed = {v: (m, t.replace(epochs=args.epochs), e) for v, (m, t, e) in parsed.items()}
  tasks_by_window = {}
  evaluation = split.evaluation
  if args.held_out:
    evaluation = evaluation.select(np.isin(evaluation.member_ids, list(split.held_out_members)))
  results = {v: [] for v in args.variants}
  seconds = {v: [] for v in args.variants}
  for seed in args.seeds:
    trained = {}
    for variant, (method, train_hp, eval_hp) in parsed.items():
      t0 = time.perf_counter()
      kind = M.TRAINED_AS[method]
      key = (kind, train_hp.replace(fine_tune_steps=0, fine_tune_lr=0.0))
      if key not in trained:
        tasks_key = train_hp.training_task_settings()
        if tasks_key not in tasks_by_window:
          tasks_by_window[tasks_key] = M.training_tasks(train_hp, split.train)
        trained[key] = M.train(kind, train_hp, tasks_by_window[tasks_key],
                               split.preprocessor.num_items, split.preprocessor.num_members,
                               seed)[0]
      model = trained[key]
      M.configure_for(method, model, eval_hp)  # one model serves `V` and `V@K`
      results[variant].append(evaluate(model, evaluation, args.few_shot))
      seconds[variant].append(round(time.perf_counter() - t0, 1))
      last = results[variant][-1]
      few_shot = " ".join(f"n={n}:{last[str(n)]['gauc']:.4f}/{last[str(n)]['log_loss']:.3f}"
                          for n in args.few_shot)
      segments = " ".join(f"{s}:{last['all'][f'gauc_{s}']:.4f}" for s in metrics.SEGMENTS)
      print(f"seed {seed} {variant:<40} gauc {last['all']['gauc']:.4f} auc {last['all']['auc']:.4f} "
            f"log_loss {last['all']['log_loss']:.4f} ({seconds[variant][-1]} s) gauc by segment: "
            f"{segments}; gauc/log_loss by support size: {few_shot}", file=sys.stderr)
  record = {
      "dataset": args.csv or args.dataset,
      "settings_from": settings_source,
      "protocol": f"{args.protocol} (validation split inside the training data)",
      "held_out_fraction": args.held_out,
      "max_support": args.max_support,
      "seeds": args.seeds,
      "scored_members": int(len(evaluation)),
      "query_interactions": int(evaluation.query_sizes.sum()),
      "training_interactions": int(len(split.train["label"])),
      "variants": {v: {"hyperparameters": {k: (list(x) if isinstance(x, tuple) else x)
                                           for k, x in vars(parsed[v][1]).items()},
                       "evaluation_inner_steps": parsed[v][2].inner_steps,
                       "seconds": seconds[v], **summarise(results[v])}
                   for v in args.variants},
      "seconds": round(time.perf_counter() - started, 1),
  }
  print(json.dumps(record))
  return record


if __name__ == "__main__":
  main()
