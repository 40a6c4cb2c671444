"""Refresh: new interactions -> new serving version, scored as TF Serving loads it.

A tiny real Transform graph and an untrained model exported as the Trainer
exports it (`adapt` signature). The first refresh runs with no served version
yet and an explicit feature spec, the second through `limaml embeddings
refresh` with the `features.json` beside its CSV.
"""

import contextlib
import csv
import io
import json
import os

import numpy as np
import pytest

from limaml import cli
from limaml_keras import catalog as catalog_lib
from limaml_keras import serving_requests as requests_lib
from limaml_keras import warmup
from limaml_keras import serving_contract
from tfx_pipeline.models import export
from tfx_pipeline.models import personalized_model as pm
from tfx_pipeline.ops import push
from tfx_pipeline.ops import refresh
from limaml_keras import schema
from tfx_pipeline import testing

# Builds TFX/Transform outputs or SavedModels in its fixtures: minutes, not seconds.
pytestmark = pytest.mark.slow

HEADER = list(testing.RAW_FEATURE_SPEC)
FIRST = [(7, "x", 10, 1, 20.0, 1990), (7, "y", 20, 0, 22.0, 2000), (8, "y", 5, 1, 40.0, 2010)]
# Member 7's new interactions (all positive on x) and a new member 10; nothing for 8.
SECOND = [(7, "x", 30, 1, 24.0, 1990), (7, "x", 40, 1, 24.0, 1990), (10, "y", 35, 0, 50.0, 2000)]
REQUESTS = [{"member_id": m, "item_id": "x", "age": 30.0, "year": 1995} for m in (7, 8, 10)]


def _csv(path, rows):
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(HEADER)
    writer.writerows(rows)
  return str(path)


def _serve(path, requests):
  """serving_default of the version at `path`, loaded the way TF Serving loads it."""
  return testing.serve_signature(path, serving_contract.SERVING_SIGNATURE, {serving_contract.EXAMPLES: requests})


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
  root = tmp_path_factory.mktemp("refresh")
  tft_output = testing.transform_output(str(root / "transform"))
  model_dir = export.export_serving_model(testing.untrained_model(tft_output), tft_output,
                                          str(root / "trainer"))
  base = str(root / "serving")
  first = refresh.refresh(model_dir, str(root / "transform"), [_csv(root / "a.csv", FIRST)],
                          base, max_support=5, version=1, feature_spec=testing.SPEC)
  schema.save_spec(testing.SPEC, str(root / schema.SPEC_FILE_NAME))
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    code = cli.main(["embeddings", "refresh", "--model", model_dir, "--transform-graph",
                     str(root / "transform"), "--interactions", _csv(root / "b.csv", SECOND),
                     "--model-base-path", base, "--max-support", "5"])
  assert code == 0
  raw_spec = serving_contract.serving_feature_spec(tft_output.raw_feature_spec())
  requests = [serving_contract.raw_example(r, raw_spec).SerializeToString() for r in REQUESTS]
  return {"root": root, "base": base, "first": first, "model_dir": model_dir,
          "second": json.loads(stdout.getvalue().strip().splitlines()[-1]),
          "requests": requests}


def test_first_refresh_without_a_served_version(refreshed):
  first = refreshed["first"]
  assert first.version_path == os.path.join(refreshed["base"], "1")
  assert first.base_version is None
  assert (first.members, first.updated, first.added) == (2, 0, 2)
  ids, _ = pm.read_member_table(first.version_path)
  assert ids == ["7", "8"]


def test_second_refresh_replaces_and_adds_rows_only_for_members_in_the_input(refreshed):
  second = refreshed["second"]
  versions = push.list_versions(refreshed["base"])
  assert len(versions) == 2 and versions[0] == 1 and versions[1] > 1  # Default: max(now, 2).
  assert second["version_path"] == push.version_path(refreshed["base"], versions[1])
  assert (second["base_version"], second["members"], second["updated"], second["added"]) == (
      1, 3, 1, 1)
  old_ids, old = pm.read_member_table(refreshed["first"].version_path)
  new_ids, new = pm.read_member_table(second["version_path"])
  assert new_ids == ["10", "7", "8"]
  np.testing.assert_array_equal(new[2], old[1])  # Member 8: the very same row.
  assert not np.allclose(new[1], old[0])  # Member 7: re-adapted on the new window.


def test_scores_change_only_for_refreshed_members(refreshed):
  before = _serve(refreshed["first"].version_path, refreshed["requests"])
  after = _serve(refreshed["second"]["version_path"], refreshed["requests"])
  assert before[serving_contract.PERSONALISED].tolist() == [True, True, False]
  assert after[serving_contract.PERSONALISED].tolist() == [True, True, True]
  logits_before, logits_after = before[serving_contract.LOGITS], after[serving_contract.LOGITS]
  assert abs(logits_after[0] - logits_before[0]) > 1e-4  # Member 7 changed.
  assert logits_after[1] == logits_before[1]  # Member 8 did not.
  assert abs(logits_after[2] - logits_before[2]) > 1e-4  # Member 10: cold start -> adapted.


def _warmup_members(version_path):
  """The member ids of each warmup request of a version."""
  return [sorted({row["member_id"] for row in catalog_lib.rows_from_examples(
      requests_lib.request_examples(r))}) for r in warmup.read_warmup_requests(version_path)]


def test_every_pushed_version_carries_warmup_of_its_input(refreshed):
  first, second = refreshed["first"].version_path, refreshed["second"]["version_path"]
  # The input's most active members (ties by id), then a cold one; each ranks the input's items.
  assert _warmup_members(first)[:2] == [[7], [8]]
  assert _warmup_members(second)[:2] == [[7], [10]]
  for path in (first, second):
    outputs = warmup.replay_warmup_requests(path)
    assert [o[serving_contract.PERSONALISED].tolist() for o in outputs] == [[True, True], [True, True],
                                                             [False, False]]
    assert all(np.isfinite(o[serving_contract.LOGITS]).all() for o in outputs)


def test_refused_refreshes_leave_the_served_versions_alone(refreshed, tmp_path):
  versions = push.list_versions(refreshed["base"])
  transform_dir = str(refreshed["root"] / "transform")
  with pytest.raises(ValueError, match="version 1 exists already"):
    refresh.refresh(refreshed["model_dir"], transform_dir, [_csv(tmp_path / "c.csv", SECOND)],
                    refreshed["base"], version=1)
  bad = tmp_path / "bad.csv"
  bad.write_text(",".join(HEADER + ["colour"]) + "\n7,x,1,1,20.0,1990,red\n")
  with pytest.raises(ValueError, match=r"unknown columns \['colour'\]"):
    refresh.refresh(refreshed["model_dir"], transform_dir, [str(bad)], refreshed["base"])
  with pytest.raises(FileNotFoundError, match="no feature spec for .*c.csv"):
    refresh.refresh(refreshed["model_dir"], transform_dir, [str(tmp_path / "c.csv")],
                    refreshed["base"])
  assert push.list_versions(refreshed["base"]) == versions
  assert not [p for p in os.listdir(refreshed["base"]) if not p.isdigit()]


def test_base_path_lock_waits_then_fails_with_a_clear_error(tmp_path):
  base = str(tmp_path / "serving")
  with refresh.base_path_lock(base):
    # flock locks belong to open file descriptions, so a second `open` of the
    # directory conflicts even in this process, as another process's would
    # (processes racing for real: tests/benchmarks/refresh_race_test.py, which runs
    # benchmarks/refresh_race.py: concurrent `limaml embeddings refresh` processes lose no update).
    with pytest.raises(ValueError) as waited:
      with refresh.base_path_lock(base, timeout_s=0.5):
        pass
  assert "another refresh of" in str(waited.value) and "nothing was pushed" in str(waited.value)
  with refresh.base_path_lock(base, timeout_s=0.1):  # Released: taken at once.
    pass
  assert os.listdir(base) == []  # No lock file among the versions.


def test_merge_tables_checks_the_embedding_size():
  ids, embeddings, updated, added = refresh.merge_tables(
      ["a", "c"], np.ones([2, 2]), ["c", "b"], np.zeros([2, 2]))
  assert (ids, updated, added) == (["a", "b", "c"], 1, 1)
  np.testing.assert_array_equal(embeddings, [[1, 1], [0, 0], [0, 0]])
  with pytest.raises(ValueError, match="comes from another model"):
    refresh.merge_tables(["a"], np.ones([1, 2]), ["b"], np.ones([1, 3]))
