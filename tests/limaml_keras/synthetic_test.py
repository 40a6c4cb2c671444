"""Tests of the synthetic interaction generator."""

import numpy as np
import pandas as pd
import pytest

from limaml_keras import preprocessing
from limaml_keras import schema
from limaml_keras import synthetic


@pytest.fixture(scope="module")
def data():
  return synthetic.generate()


def _auc(label, score):
  """Rank-based ROC AUC (ties averaged)."""
  label = np.asarray(label, bool)
  ranks = pd.Series(score).rank().to_numpy()
  positives, negatives = label.sum(), (~label).sum()
  return (ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives)


def _member_blocks(data):
  """Yields the time-ordered row indices of each member."""
  rows = pd.Series(np.arange(len(data.interactions)))
  for _, block in rows.groupby(data.member_index):
    yield block.to_numpy()


def test_same_seed_same_data_other_seed_other_data():
  first = synthetic.generate(num_members=200, num_items=50, seed=7)
  second = synthetic.generate(num_members=200, num_items=50, seed=7)
  other = synthetic.generate(num_members=200, num_items=50, seed=8)
  pd.testing.assert_frame_equal(first.interactions, second.interactions)
  np.testing.assert_array_equal(first.logit, second.logit)
  np.testing.assert_array_equal(first.member_preference, second.member_preference)
  assert not first.interactions.equals(other.interactions)


def test_columns_and_types_follow_the_raw_schema(data):
  frame = data.interactions
  assert tuple(frame.columns) == data.spec.all_columns()
  assert data.spec == synthetic.SPEC
  assert frame[schema.MEMBER_ID_COLUMN].str.fullmatch(r"m\d{5}").all()
  assert frame[schema.ITEM_ID_COLUMN].str.fullmatch(r"i\d{4}").all()
  assert frame[schema.TIMESTAMP_COLUMN].dtype == np.int64
  assert frame[schema.LABEL_COLUMN].dtype == np.int64
  assert set(frame[schema.LABEL_COLUMN].unique()) == {0, 1}
  for column in data.spec.numeric_columns():
    assert frame[column].dtype == np.float64, column
  assert frame["member_segment"].nunique() == synthetic.NUM_MEMBER_SEGMENTS
  assert frame["item_category"].nunique() == synthetic.NUM_ITEM_CATEGORIES
  assert frame[schema.TIMESTAMP_COLUMN].is_monotonic_increasing
  assert frame[schema.TIMESTAMP_COLUMN].between(data.start_timestamp,
                                                data.end_timestamp - 1).all()


def test_member_features_are_constant_per_member(data):
  member_columns = data.spec.member_numeric + data.spec.member_categorical
  per_member = data.interactions.groupby(schema.MEMBER_ID_COLUMN)[list(member_columns)]
  assert (per_member.nunique() == 1).all().all()


def test_default_size_and_positive_rate(data):
  frame = data.interactions
  assert frame[schema.MEMBER_ID_COLUMN].nunique() == 2000
  assert 30_000 <= len(frame) <= 55_000
  assert 0.3 <= frame[schema.LABEL_COLUMN].mean() <= 0.5


def test_activity_is_heavy_tailed(data):
  activity = data.interactions[schema.MEMBER_ID_COLUMN].value_counts().to_numpy()
  median = np.median(activity)
  assert activity.min() == 1
  assert activity.max() <= 300
  assert 5 <= median <= 25
  assert activity.max() >= 10 * median
  top_decile = np.sort(activity)[::-1][:len(activity) // 10]
  assert top_decile.sum() >= 0.3 * activity.sum()


def test_late_members_appear_only_late(data):
  assert data.member_is_late.mean() == pytest.approx(0.1, abs=0.01)
  first_seen = pd.Series(data.interactions[schema.TIMESTAMP_COLUMN].to_numpy()).groupby(
      data.member_index).min()
  late_start = data.start_timestamp + 0.8 * (data.end_timestamp - data.start_timestamp)
  assert (first_seen[data.member_is_late[first_seen.index]] >= late_start).all()
  assert (first_seen[~data.member_is_late[first_seen.index]] < late_start).mean() > 0.8


def test_true_logit_beats_the_features_only_logit(data):
  label = data.interactions[schema.LABEL_COLUMN].to_numpy()
  assert _auc(label, data.logit) - _auc(label, data.feature_logit) > 0.1


def test_member_features_explain_only_part_of_the_preference(data):
  member_rows = pd.Series(np.arange(len(data.interactions))).groupby(
      data.member_index).first().sort_index()
  frame = data.interactions.iloc[member_rows.to_numpy()]
  design = np.concatenate(
      [frame[list(data.spec.member_numeric)].to_numpy(),
       pd.get_dummies(frame["member_segment"]).to_numpy(float)], axis=1)
  target = data.member_preference[member_rows.index]
  fitted = design @ np.linalg.lstsq(design, target, rcond=None)[0]
  r_squared = 1 - ((target - fitted)**2).sum() / ((target - target.mean(0))**2).sum()
  assert 0.1 < r_squared < 0.45


def test_drift_moves_preferences_and_matters_for_labels(data):
  late = data.preference_at(np.arange(5), [data.end_timestamp] * 5)
  early = data.preference_at(np.arange(5), [data.start_timestamp] * 5)
  np.testing.assert_allclose(late - early, data.member_drift[:5])
  tau = data.time_fraction(data.interactions[schema.TIMESTAMP_COLUMN].to_numpy())
  drift_term = (data.personalisation_scale / np.sqrt(data.item_latent.shape[1]) *
                data.personalisation_strength[data.member_index] * tau * np.einsum(
                    "nk,nk->n", data.member_drift[data.member_index],
                    data.item_latent[data.item_index]))
  label = data.interactions[schema.LABEL_COLUMN].to_numpy()
  assert _auc(label, data.logit) > _auc(label, data.logit - drift_term) + 0.005


def _adapt(data, support, l2=1.0, steps=10):
  """MAP logistic fit of a member's deviation w on its support (known q_i)."""
  label = data.interactions[schema.LABEL_COLUMN].to_numpy()[support]
  x = (data.personalisation_scale / np.sqrt(data.item_latent.shape[1]) *
       data.item_latent[data.item_index[support]])
  offset = data.feature_logit[support]
  w = np.zeros(x.shape[1])
  for _ in range(steps):
    p = 1 / (1 + np.exp(-(offset + x @ w)))
    gradient = x.T @ (p - label) + l2 * w
    hessian = (x.T * (p * (1 - p))) @ x + l2 * np.eye(x.shape[1])
    w -= np.linalg.solve(hessian, gradient)
  return w


def test_a_few_support_interactions_recover_a_clear_margin(data):
  """Per-member adaptation on 5-20 support rows beats the features-only logit."""
  label = data.interactions[schema.LABEL_COLUMN].to_numpy()
  norm = data.personalisation_scale / np.sqrt(data.item_latent.shape[1])
  labels, adapted, global_only = [], [], []
  for rows in _member_blocks(data):
    if len(rows) < 10:
      continue
    num_support = min(len(rows) // 2, 20)
    support, query = rows[:num_support], rows[num_support:]
    w = _adapt(data, support)
    labels.append(label[query])
    adapted.append(data.feature_logit[query] + norm * data.item_latent[data.item_index[query]] @ w)
    global_only.append(data.feature_logit[query])
  labels, adapted, global_only = map(np.concatenate, (labels, adapted, global_only))
  assert _auc(labels, adapted) - _auc(labels, global_only) > 0.05


@pytest.mark.slow
def test_write_csv_round_trips(data, tmp_path):
  path = synthetic.write_csv(data, str(tmp_path / "sub" / "synthetic.csv"))
  frame = preprocessing.read_raw_csv_frame(path, data.spec)
  assert tuple(frame.columns) == data.spec.all_columns()
  for column in frame.columns:
    expected = data.interactions[column].to_numpy()
    if column in data.spec.numeric_columns():
      np.testing.assert_allclose(frame[column].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    else:
      np.testing.assert_array_equal(frame[column].to_numpy(), expected, err_msg=column)


@pytest.mark.parametrize("kwargs, name", [
    (dict(num_members=0), "num_members"),
    (dict(feature_explained=1.5), "feature_explained"),
    (dict(positive_rate=1.0), "positive_rate"),
    (dict(latent_dim=1), "latent_dim"),
    (dict(late_window=0.0), "late_window"),
])
def test_bad_arguments_raise(kwargs, name):
  with pytest.raises(ValueError, match=name):
    synthetic.generate(**kwargs)
