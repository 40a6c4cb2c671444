"""`limaml pipeline run|compile`: the TFX pipeline from the command line.

    limaml pipeline run [--data CSV|DIR] [--output DIR]   run locally
    limaml pipeline compile --output spec.json            Kubeflow V2 spec

`run` validates and time-splits the data before any TFX component starts
(`tfx_pipeline.ops.input_data`); without `--data` it generates the synthetic
data set into the output directory. Reruns with the same inputs reuse the
cached components. At the end it prints the Evaluator's verdict: AUC, gAUC
and log loss of the personalised model and of the global baseline, overall and
per member-activity bucket (empty buckets included), the 95 % interval of the
gAUC gain, whether the model was blessed (`--min-auc`, `--min-gauc-gain`,
`--max-log-loss-increase`) and the version pushed, if any.
"""

import argparse
import dataclasses
import os
import time

from limaml import cli
from tfx_pipeline.pipeline import configs
from limaml_keras import model_config
from limaml_keras import task_settings

_RESULT_PREFIX = "[pipeline]"


def _add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
  """Settings shared by `run` and `compile`."""
  defaults = model_config.ModelConfig()
  tasks = task_settings.DEFAULTS
  parser.add_argument("--spec", help="feature spec JSON (default: features.json next to the "
                      "data; the synthetic spec when there is no --data)")
  parser.add_argument("--settings-from", metavar="DATASET",
                      help="start from the LiMAML settings `limaml evaluate` tuned on this "
                      "dataset (model and training tasks), or 'defaults' for the library "
                      "defaults; the flags below override them (default: the settings tuned "
                      "on real data for your data, the library defaults for the generated "
                      "synthetic data)")
  for flag, default, text in (
      ("--epochs", defaults.epochs, "training epochs"),
      ("--batch-size", defaults.batch_size, "tasks per batch"),
      ("--inner-steps", defaults.inner_steps, "MAML inner steps"),
      ("--window", tasks.window, "training-period interactions per training task"),
      ("--task-history", tasks.task_history, "0: split each window into support and query; "
       "h > 0: history tasks, each window the query, the member's h previous interactions "
       "the support"),
      ("--max-support", tasks.max_support, "support interactions of adaptation, the latest"),
      ("--max-query", tasks.max_query, "query interactions per evaluation task, the earliest")):
    parser.add_argument(flag, type=int, help=f"{text} (default: {default})")
  parser.add_argument("--no-baseline", action="store_true",
                      help="do not train the global baseline (the Evaluator then checks "
                      "--min-auc only)")
  parser.add_argument("--min-auc", type=float, default=configs.MIN_AUC,
                      help="push only if the personalised model's evaluation-period pooled "
                      "AUC is at least this (default: %(default)s)...")
  parser.add_argument("--min-gauc-gain", type=float, default=configs.MIN_GAUC_GAIN,
                      help="...and the lower bound of the 95%% member-bootstrap interval of "
                      "its gAUC minus the baseline's is above this (default: %(default)s)...")
  parser.add_argument("--max-log-loss-increase", type=float,
                      default=configs.MAX_LOG_LOSS_INCREASE,
                      help="...and its log loss exceeds the baseline's by at most this "
                      "(default: %(default)s)")
  cli.add_beam_arguments(parser)


def register(subparsers) -> None:
  """Adds the `pipeline` command (with `run` and `compile`) to the `limaml` CLI."""
  commands = cli.add_command_group(
      subparsers, "pipeline", "the TFX pipeline: run it locally or compile it for Kubeflow",
      __doc__)

  run = commands.add_parser("run", help="run the pipeline locally (LocalDagRunner)")
  run.add_argument("--data", help="a raw-schema CSV, a directory of CSVs, or a directory "
                   "already split into train/ and eval/ (default: generate synthetic data)")
  run.add_argument("--output", default=os.path.join("outputs", "pipeline"),
                   help="output directory (default: %(default)s)")
  run.add_argument("--eval-fraction", type=float, default=task_settings.EVAL_FRACTION,
                   help="share of interactions, the latest, in the evaluation period "
                   "(default: %(default)s)")
  cli.add_as_of_argument(run)
  run.add_argument("--members", type=int, default=configs.SYNTHETIC_MEMBERS,
                   help="members of the synthetic data (default: %(default)s)")
  run.add_argument("--no-cache", action="store_true", help="rerun every component")
  run.add_argument("--verbose", action="store_true",
                   help="show every log record of TFX, Beam and TensorFlow, not only errors")
  _add_pipeline_arguments(run)
  run.set_defaults(func=_run)

  compile_ = commands.add_parser("compile", help="compile a Kubeflow Pipelines V2 JSON spec")
  compile_.add_argument("--output", required=True, help="the JSON file to write")
  compile_.add_argument("--pipeline-root", default="gs://YOUR_BUCKET/limaml",
                        help="root URI of the pipeline's artifacts (default: %(default)s)")
  compile_.add_argument("--data-root", help="URI holding train/ and eval/ CSVs "
                        "(default: <pipeline-root>/data)")
  compile_.add_argument("--image", default=configs.PIPELINE_IMAGE,
                        help="container image of the steps (default: %(default)s)")
  _add_pipeline_arguments(compile_)
  compile_.set_defaults(func=_compile)


def _pipeline_kwargs(args) -> dict:
  """`create_pipeline` keyword arguments from the shared options (checked)."""
  from tfx_pipeline.components import evaluation_config  # pylint: disable=g-import-not-at-top
  evaluation_config.check_thresholds(args.min_auc, args.min_gauc_gain,
                                     args.max_log_loss_increase)
  config, tasks = _starting_settings(_settings_source(args))
  given = lambda names: {name: getattr(args, name) for name in names  # pylint: disable=g-long-lambda
                         if getattr(args, name) is not None}
  return {
      "task_settings": tasks.replace(**given(("window", "task_history", "max_support",
                                              "max_query"))),
      "train_baseline": not args.no_baseline,
      "min_auc": args.min_auc,
      "min_gauc_gain": args.min_gauc_gain,
      "max_log_loss_increase": args.max_log_loss_increase,
      "model_config": config.replace(**given(("epochs", "batch_size", "inner_steps"))),
  }


def _settings_source(args) -> str:
  """Where the LiMAML settings come from: `--settings-from`, else by whose data it is.

  A user's data (`run --data`, `compile --spec`) gets the settings tuned on
  real data (`tuned.FOR_NEW_DATA`), as `limaml evaluate --data` does; the
  generated synthetic data of a quick run gets the library defaults.
  """
  from limaml_keras.evaluation import tuned  # pylint: disable=g-import-not-at-top
  if args.settings_from:
    return args.settings_from
  users_data = getattr(args, "data", None) or args.spec
  return tuned.FOR_NEW_DATA if users_data else tuned.LIBRARY_DEFAULTS


def _starting_settings(source: str):
  """`(ModelConfig, TaskSettings)` of LiMAML's settings named `source` (`tuned.settings_for`)."""
  from limaml_keras.evaluation import tuned  # pylint: disable=g-import-not-at-top
  # ValueError names the tuned datasets.
  hp = tuned.settings_for(None, source)[0]["limaml"]
  return hp.model_config(), hp.training_task_settings()


def settings_line(config: model_config.ModelConfig, tasks: task_settings.TaskSettings,
                  settings_from=None) -> str:
  """What the Trainer trains, as the fields that differ from the library defaults."""
  def changed(value, default):
    return ", ".join(f"{f.name}={getattr(value, f.name)!r}" for f in dataclasses.fields(value)
                     if getattr(value, f.name) != getattr(default, f.name))
  model = changed(config, model_config.ModelConfig()) or "the defaults"
  training = changed(tasks, task_settings.DEFAULTS) or "the defaults"
  from limaml_keras.evaluation import tuned  # pylint: disable=g-import-not-at-top
  source = (f" (from the settings tuned on {settings_from})"
            if settings_from and settings_from != tuned.LIBRARY_DEFAULTS else "")
  return f"LiMAML settings{source}: {model}; tasks: {training}"


def _synthetic_input(output_dir: str, num_members: int) -> str:
  """Writes the synthetic data set and its spec under `output_dir`; returns the CSV path."""
  from limaml_keras import synthetic  # pylint: disable=g-import-not-at-top
  from limaml_keras import schema  # pylint: disable=g-import-not-at-top
  data = synthetic.generate(num_members=num_members, num_items=configs.SYNTHETIC_ITEMS,
                            seed=configs.SYNTHETIC_SEED)
  path = synthetic.write_csv(data, os.path.join(output_dir, "input", "interactions.csv"))
  schema.save_spec(data.spec, os.path.join(os.path.dirname(path), schema.SPEC_FILE_NAME))
  return path


def _report(line: str) -> None:
  print(f"{_RESULT_PREFIX} {line}", flush=True)


def _report_results(paths, pipeline_name: str, train_baseline: bool) -> None:
  """Prints task counts, the trainers' and the Evaluator's metrics, and what was pushed."""
  # pylint: disable=g-import-not-at-top
  import json
  import tensorflow as tf
  from tfx_pipeline.ops import evaluation_results
  from tfx_pipeline import local_runner
  from tfx_pipeline.components import task_gen
  from tfx_pipeline.models import trainer
  # pylint: enable=g-import-not-at-top
  tasks = local_runner.latest_outputs(paths, pipeline_name, "TaskGen")["tasks"]
  statistics = task_gen.read_statistics(tasks.uri)
  _report("tasks: " + ", ".join(
      f"{split} {statistics[split]['tasks']} ({statistics[split]['cold_start_tasks']} cold start)"
      for split in (task_gen.TRAIN_SPLIT, task_gen.EVAL_SPLIT)))
  trainers = [(configs.TRAINER_ID, "LiMAML")]
  if train_baseline:
    trainers.append((configs.BASELINE_TRAINER_ID, "global baseline"))
  for node_id, name in trainers:
    model_run = local_runner.latest_outputs(paths, pipeline_name, node_id)["model_run"]
    with tf.io.gfile.GFile(os.path.join(model_run.uri, trainer.METRICS_FILE)) as f:
      metrics = json.load(f)["eval"]
    _report(f"{name}: evaluation-period query AUC {metrics['auc']:.4f}, "
            f"loss {metrics['loss']:.4f}")
  evaluation = local_runner.latest_outputs(paths, pipeline_name, configs.EVALUATOR_ID)
  for line in evaluation_results.report_lines(
      evaluation_results.read_evaluation(evaluation["evaluation"].uri)):
    _report(line)
  _report(pushed_line(local_runner.latest_outputs(paths, pipeline_name, configs.PUSHER_ID)))


def pushed_line(pusher_outputs) -> str:
  """What the Pusher did, from its output artifacts (`local_runner.latest_outputs`)."""
  properties = pusher_outputs["pushed_model"].custom_properties
  if not properties["pushed"].int_value:
    return "serving model: not pushed: not blessed"
  return (f"serving model: pushed version {properties['pushed_version'].string_value} to "
          f"{properties['pushed_destination'].string_value}")


def _run(args) -> int:
  """`limaml pipeline run`."""
  # pylint: disable=g-import-not-at-top
  from tfx_pipeline.ops import input_data
  from tfx_pipeline import local_runner
  from limaml_keras import schema
  # pylint: enable=g-import-not-at-top
  started = time.time()
  kwargs = _pipeline_kwargs(args)
  paths = local_runner.LocalPaths(os.path.abspath(args.output))
  data_path = args.data
  if data_path is None:
    data_path = _synthetic_input(paths.output_dir, args.members)
    _report(f"generated synthetic data ({args.members} members): {data_path}")
  spec = schema.load_spec(args.spec or schema.find_spec_file(data_path))
  summary = input_data.prepare_data_root(data_path, spec, paths.data_root, args.eval_fraction,
                                         as_of=args.as_of)
  for note in summary.notes:
    _report(f"note: {note}")
  cutoff = f", cutoff timestamp {summary.cutoff_timestamp}" if summary.cutoff_timestamp else ""
  _report(f"data root {summary.data_root}: {summary.num_train} training-period and "
          f"{summary.num_eval} evaluation-period interactions{cutoff}")
  beam_args = args.beam_arg or configs.local_beam_pipeline_args(
      summary.num_train + summary.num_eval)
  _report(f"Beam: {' '.join(beam_args)}"
          + ("" if args.beam_arg else " (chosen by data size; --beam-arg to set)"))
  _report(settings_line(kwargs["model_config"], kwargs["task_settings"], _settings_source(args)))
  pipeline = local_runner.create_local_pipeline(
      paths, summary.data_root, spec, enable_cache=not args.no_cache,
      beam_pipeline_args=beam_args, **kwargs)
  local_runner.run(pipeline, report=_report, quiet=not args.verbose)
  _report_results(paths, pipeline.pipeline_info.pipeline_name, kwargs["train_baseline"])
  _report(f"finished in {time.time() - started:.0f} s")
  return 0


def _compile(args) -> int:
  """`limaml pipeline compile`."""
  # pylint: disable=g-import-not-at-top
  from limaml_keras import synthetic
  from tfx_pipeline import kubeflow_v2_runner
  from limaml_keras import schema
  # pylint: enable=g-import-not-at-top
  spec = schema.load_spec(args.spec) if args.spec else synthetic.SPEC
  kubeflow_v2_runner.compile_pipeline(
      args.output, args.pipeline_root, args.data_root or f"{args.pipeline_root}/data", spec,
      image=args.image, beam_pipeline_args=args.beam_arg or configs.KUBEFLOW_BEAM_PIPELINE_ARGS,
      **_pipeline_kwargs(args))
  _report(f"wrote the Kubeflow V2 pipeline spec to {args.output}")
  return 0
