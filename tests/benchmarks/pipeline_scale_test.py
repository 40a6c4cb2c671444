"""`benchmarks/pipeline_scale.py`: parsing the CLI's component times (the full runs are the
benchmark itself)."""

from tests.benchmarks import scripts

bench = scripts.load("pipeline_scale")


def test_component_seconds_from_progress_lines():
  lines = ["[pipeline] generated synthetic data", "[pipeline] [1/3] CsvExampleGen: running",
           "[pipeline] [1/3] CsvExampleGen: done (21.5 s)", "[2/3] Transform: cached (0.3 s)",
           "[pipeline] [3/3] BaselineTrainer: done (102.0 s)", "[pipeline] finished in 130 s"]
  assert bench.component_seconds(lines) == {"CsvExampleGen": 21.5, "Transform": 0.3,
                                            "BaselineTrainer": 102.0}


def test_running_component_is_the_one_started_last_and_not_finished():
  lines = ["[1/3] CsvExampleGen: running", "[1/3] CsvExampleGen: done (2.0 s)",
           "[2/3] StatisticsGen: running"]
  progress = bench.Progress()
  for count, line in enumerate(lines, 1):
    progress.add(line)
    if count == 2:
      assert progress.running is None
  assert progress.running == "StatisticsGen"
  assert progress.lines == lines


def test_runs_are_multi_processing_unless_beam_args_are_given():
  assert bench.with_local_beam_args(["--no-baseline"]) == [
      "--no-baseline", "--beam-arg=--direct_running_mode=multi_processing",
      "--beam-arg=--direct_num_workers=2"]
  given = ["--beam-arg=--direct_running_mode=in_memory"]
  assert bench.with_local_beam_args(given) == given
