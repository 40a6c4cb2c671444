"""`benchmarks/abuse.py`: the server scenarios under legitimate load, at a small scale.

The run leaves out the `concurrent_refreshes` part (`--refreshes 0`): it is
`benchmarks/refresh_race.py`'s `scenario`, which `refresh_race_test.py` runs.
"""

import pytest

from tests.benchmarks import scripts

abuse = scripts.load("abuse")

REST_THREADS = 2


@pytest.fixture(scope="module")
def result():
  """`main`'s record of a small run: 5 members, 2 REST threads timing out after 1 s, 3 clients."""
  return abuse.main(["--members", "5", "--rest-timeout-s", "1", "--rest-threads",
                     str(REST_THREADS), "--clients", "3", "--refreshes", "0"])


@pytest.mark.slow  # exports SavedModels and starts a server process
def test_legitimate_clients_see_no_failure_and_no_wrong_version(result):
  assert set(result) == {"server_peak_rss_growth_mb", "requests_failed", "wrong_versions_served",
                         "updates_lost", "requests_ok", "expected_not_found", "seconds",
                         "scenarios", "first_failures", "first_wrong"}
  assert result["requests_failed"] == 0, result["first_failures"]
  assert result["wrong_versions_served"] == 0, result["first_wrong"]
  assert (result["first_failures"], result["first_wrong"]) == ([], [])
  assert result["requests_ok"] >= 20  # `main` waits for 20 answers before the scenarios.
  assert result["updates_lost"] is None  # No refreshes were run.
  assert list(result["scenarios"]) == [s.__name__ for s in abuse.SCENARIOS]
  assert result["server_peak_rss_growth_mb"] >= 0  # A peak (VmHWM) only grows.


@pytest.mark.slow  # exports SavedModels and starts a server process
def test_each_scenario_is_refused_or_survived(result):
  scenarios = result["scenarios"]
  oversized = scenarios["oversized_shapes"]
  assert oversized["requests"] == oversized["invalid_argument"] == 8 * 3
  assert oversized["wire_bytes"] < 64
  stalled = scenarios["stalled_uploads"]
  assert stalled["connection_cap"] == REST_THREADS
  assert stalled["connections"] == stalled["closed_by_server"] == 3 * REST_THREADS
  assert stalled["rest_timeout_s"] == 1.0
  slow = scenarios["slow_copy"]
  assert (slow["version"], slow["wrong_answers"]) == (2, 0)
  assert slow["member_table_bytes"] > 0
  removal = scenarios["version_removal"]
  # Version 2 removed (1 serves), then 1 too, then 3 renamed into place.
  assert removal["fell_back_from"] == 2
  assert removal["restored_version"] == 3
  assert removal["predict_after_removal"] == 404
  assert removal["states_after_removal"] and all(
      state == "END" for _, state in removal["states_after_removal"])


@pytest.mark.parametrize("argv, message", [
    (["--members", "1"], "--members must be >= 2 and --clients >= 1"),
    (["--clients", "0"], "--members must be >= 2 and --clients >= 1"),
])
def test_bad_flags_are_named(argv, message, capsys):
  with pytest.raises(SystemExit):
    abuse.main(argv)
  assert message in capsys.readouterr().err
