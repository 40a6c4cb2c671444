"""`limaml demo`: its three steps in order, and where it stops.

The comparison (`experiment.evaluate`) and the pipeline run (`limaml pipeline
run`) are stood in by recorders here: each has its own end-to-end tests
(`experiment_test`, `pipeline_command_test`, `pipeline_test`), and `./run.sh
demo` runs all three for real. The serving step is real: a pushed SavedModel,
the dev server and gRPC.
"""

import os
import shutil

import pytest

from limaml import cli
from limaml import pipeline_command
from limaml_keras import schema
from limaml_keras.evaluation import experiment
from tests import serving_fixtures


@pytest.fixture
def evaluations(monkeypatch):
  calls = []
  monkeypatch.setattr(experiment, "evaluate",
                      lambda dataset, output_dir, seeds, log: calls.append(
                          (dataset, output_dir, list(seeds))))
  return calls


def _pipeline_stand_in(monkeypatch, exit_code=0, push=None):
  """`limaml pipeline run` replaced: records its output dir, optionally pushes a model."""
  runs = []

  def run(args):
    runs.append(args.output)
    if push is not None:
      model, data_csv = push
      serving_fixtures.add_version(model, os.path.join(args.output, "serving_model"), 1700000000)
      shutil.copytree(os.path.dirname(data_csv), os.path.join(args.output, "input"))
    return exit_code

  monkeypatch.setattr(pipeline_command, "_run", run)
  return runs


def test_skip_pipeline_runs_only_the_comparison(tmp_path, evaluations, monkeypatch, capsys):
  runs = _pipeline_stand_in(monkeypatch)
  assert cli.main(["demo", "--output", str(tmp_path), "--seeds", "3", "--skip-pipeline"]) == 0
  assert evaluations == [("synthetic", str(tmp_path / "evaluation"), [3])]
  assert runs == []
  out = capsys.readouterr().out
  assert f"report: {tmp_path / 'evaluation' / 'report.html'}" in out
  assert "2/3" not in out


def test_defaults_are_one_seed_into_outputs_demo():
  args = cli.build_parser().parse_args(["demo"])
  assert (args.output, args.seeds, args.skip_pipeline) == ("outputs/demo", [0], False)


def test_a_failed_pipeline_run_is_the_demos_exit_code(tmp_path, evaluations, monkeypatch,
                                                      capsys):
  runs = _pipeline_stand_in(monkeypatch, exit_code=3)
  assert cli.main(["demo", "--output", str(tmp_path)]) == 3
  assert runs == [str(tmp_path / "pipeline")]
  assert "3/3" not in capsys.readouterr().out


def test_an_unblessed_model_is_not_served(tmp_path, evaluations, monkeypatch, capsys):
  _pipeline_stand_in(monkeypatch)  # runs, pushes nothing: the Evaluator did not bless
  assert cli.main(["demo", "--output", str(tmp_path)]) == 0
  out = capsys.readouterr().out
  assert "nothing to serve" in out and "did not bless" in out


def test_a_pushed_model_is_served_over_grpc(tmp_path, evaluations, monkeypatch, capsys,
                                            saved_models, interactions_csv):
  _pipeline_stand_in(monkeypatch, push=(saved_models.personalised_v1, interactions_csv))
  assert cli.main(["demo", "--output", str(tmp_path / "demo")]) == 0
  out = capsys.readouterr().out
  assert out.index("== 1/3") < out.index("== 2/3") < out.index("== 3/3")
  assert "version 1700000000" in out
  assert "member 7 (personalised" in out and "member 9 (cold start" in out
  # The data the demo served from is the pipeline's input, with its feature spec beside it.
  assert os.path.exists(tmp_path / "demo" / "pipeline" / "input" / schema.SPEC_FILE_NAME)
