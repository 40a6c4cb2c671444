"""Tests of serving.top_k.show_top_k: a dev server on the pushed model, top-k per member."""

import shutil

import pytest

from serving import top_k


@pytest.fixture
def base_path(saved_models, tmp_path):
  path = tmp_path / "serving_model"
  shutil.copytree(saved_models.personalised_v1, path / "1700000000")
  return str(path)


def test_shows_warm_and_cold_start_members(base_path, interactions_csv):
  printed = []
  rankings = top_k.show_top_k(base_path, interactions_csv, k=1, report=printed.append)
  assert [r.member_id for r in rankings] == ["7", "8", "9"]  # Most active first, 9 unknown.
  assert [r.personalised for r in rankings] == [True, True, False]
  assert all(len(r.items) == 1 for r in rankings)
  assert "version 1700000000" in printed[0]
  assert printed[1].startswith("member 7 (personalised")
  assert printed[3].startswith("member 9 (cold start") and "not in the data" in printed[3]


def test_given_members_and_errors(base_path, interactions_csv, tmp_path):
  rankings = top_k.show_top_k(base_path, interactions_csv, members=["8"], k=2,
                             report=lambda _: None)
  assert len(rankings) == 1 and len(rankings[0].items) == 2
  empty = tmp_path / "empty"
  empty.mkdir()
  with pytest.raises(ValueError, match="no servable version"):
    top_k.show_top_k(str(empty), interactions_csv, report=lambda _: None)
