"""Unit tests of the member-grouped TFMA metrics (their TFMA runs: ops/evaluation_results_test)."""

import numpy as np
import pytest

from tfx_pipeline.components import gauc_metrics


def test_member_auc_is_weighted_by_example_count_and_skips_one_class_members():
  assert gauc_metrics.member_auc(np.array([0, 1, 1]), np.array([[0.1], [0.9], [0.5]])) == (1.0, 3.0)
  assert gauc_metrics.member_auc(np.array([1, 1]), np.array([0.2, 0.3])) is None
  assert gauc_metrics.member_auc(np.array([]), np.array([])) is None


def test_query_key_is_required():
  with pytest.raises(ValueError, match="needs a MetricsSpec with query_key"):
    gauc_metrics.GroupAUC().computations(query_key="")

