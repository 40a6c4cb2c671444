"""Seeded synthetic interactions with a known per-member personalisation signal.

The generator makes data where the right answer is known: who benefits from
personalisation, by how much, and how much of it the member features reveal.
Everything is drawn from one `np.random.Generator(seed)`, so a seed fixes the
data exactly.

Generative story (k = `latent_dim`, tau in [0, 1] = position in the time range)::

  member u   numeric features x_u ~ N(0, I), categorical `member_segment` g_u
             preference p_u(tau) = f_u + e_u + tau * d_u
               f_u = A x_u + G[g_u]   the part the member features explain,
                                      variance `feature_explained` per dim
               e_u ~ N(0, 1 - feature_explained)   the unexplained part
               d_u ~ N(0, drift^2)    drift over the whole time range
             strength s_u ~ Gamma(2, 1/2)   (mean 1; how much u deviates)
  item i     numeric features y_i ~ N(0, I), categorical `item_category` c_i
             latent q_i = [1, standardise(B y_i + C[c_i])]   (observable:
                          dimension 0 turns p_u[0] into a member bias)
             bias b_i = w.y_i + small id-level noise
  context    hour of day of the timestamp, as sin and cos
  label      ~ Bernoulli(sigmoid(logit))
             logit = intercept + H[g_u, c_i] + v.z + b_i
                     + personalisation_scale * s_u * <p_u(tau), q_i> / sqrt(k)

`intercept` is solved for so that the mean probability equals
`positive_rate`. Activity (interactions per member) is a discretised Lomax
(Pareto II) law clipped to [1, `max_interactions`]; items are exposed with
Zipf-like popularity; a `late_fraction` of members interact only in the last
`late_window` of the time range (new members).
"""

import dataclasses
import os
from typing import Optional

import numpy as np
import pandas as pd

from limaml_keras import schema

NUM_MEMBER_NUMERIC = 3
NUM_MEMBER_SEGMENTS = 5
NUM_ITEM_NUMERIC = 8
NUM_ITEM_CATEGORIES = 6

#: The raw columns of the synthetic data, by side.
SPEC = schema.FeatureSpec(
    member_numeric=tuple(f"member_num_{j}" for j in range(NUM_MEMBER_NUMERIC)),
    member_categorical=("member_segment",),
    item_numeric=tuple(f"item_num_{j}" for j in range(NUM_ITEM_NUMERIC)),
    item_categorical=("item_category",),
    context_numeric=("context_hour_sin", "context_hour_cos"),
)

_SECONDS_PER_DAY = 86400
_DEFAULT_START = 1672531200  # 2023-01-01T00:00:00Z


@dataclasses.dataclass(frozen=True)
class SyntheticData:
  """Synthetic interactions and the ground truth that generated them.

  Per-member arrays are indexed by member index `u` (`member_ids[u]` is the raw
  id), per-item arrays by item index, per-interaction arrays align with the
  rows of `interactions`.

  Attributes:
    interactions: raw-schema frame, columns `spec.all_columns()`, sorted by
      timestamp.
    spec: the `FeatureSpec` of `interactions`.
    member_ids: [U] raw member ids.
    item_ids: [I] raw item ids.
    member_preference: [U, k] p_u at the start of the time range.
    member_preference_from_features: [U, k] f_u, the part of p_u the member
      features explain.
    member_drift: [U, k] d_u, the change of p_u over the whole time range.
    personalisation_strength: [U] s_u; the personal term of member u is
      `personalisation_scale * s_u * <p_u(tau), q_i> / sqrt(k)`.
    member_is_late: [U] True for members that only appear late.
    item_latent: [I, k] q_i.
    item_bias: [I] b_i.
    member_index: [N] member index of each interaction.
    item_index: [N] item index of each interaction.
    logit: [N] the true logit of each interaction.
    feature_logit: [N] the logit with the member-specific unobservables
      replaced by their means (e_u = 0, d_u = 0, s_u = 1): the best a model
      that sees member features but does not personalise can aim at.
    intercept: the solved intercept.
    personalisation_scale: the scale of the personal term.
    start_timestamp: first second of the time range.
    end_timestamp: one past the last second of the time range.
  """
  interactions: pd.DataFrame
  spec: schema.FeatureSpec
  member_ids: np.ndarray
  item_ids: np.ndarray
  member_preference: np.ndarray
  member_preference_from_features: np.ndarray
  member_drift: np.ndarray
  personalisation_strength: np.ndarray
  member_is_late: np.ndarray
  item_latent: np.ndarray
  item_bias: np.ndarray
  member_index: np.ndarray
  item_index: np.ndarray
  logit: np.ndarray
  feature_logit: np.ndarray
  intercept: float
  personalisation_scale: float
  start_timestamp: int
  end_timestamp: int

  def time_fraction(self, timestamps) -> np.ndarray:
    """Maps Unix seconds to tau in [0, 1] (position in the time range)."""
    span = self.end_timestamp - self.start_timestamp
    return (np.asarray(timestamps, np.float64) - self.start_timestamp) / span

  def preference_at(self, member_index, timestamps) -> np.ndarray:
    """Returns p_u(tau) [..., k] of members `member_index` at `timestamps`."""
    member_index = np.asarray(member_index)
    tau = self.time_fraction(timestamps)[..., None]
    return self.member_preference[member_index] + tau * self.member_drift[member_index]


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _standardise(x):
  """Zero-mean, unit-variance columns (constant columns stay zero)."""
  x = x - x.mean(axis=0)
  std = x.std(axis=0)
  return x / np.where(std > 0, std, 1.0)


def _format_ids(prefix, n, min_width):
  width = max(min_width, len(str(max(n - 1, 0))))
  return np.array([f"{prefix}{j:0{width}d}" for j in range(n)], dtype=object)


def _activity(rng, num_members, median, tail, maximum):
  """Interactions per member: a discretised Lomax law with the given median."""
  scale = median / (2.0 ** (1.0 / tail) - 1.0)
  draws = scale * (rng.random(num_members) ** (-1.0 / tail) - 1.0)
  return np.clip(np.ceil(draws), 1, maximum).astype(np.int64)


def _solve_intercept(logit, positive_rate, tolerance=1e-6):
  """Bisects for c with mean(sigmoid(logit + c)) == positive_rate."""
  low, high = -30.0, 30.0
  while high - low > tolerance:
    mid = 0.5 * (low + high)
    if _sigmoid(logit + mid).mean() < positive_rate:
      low = mid
    else:
      high = mid
  return 0.5 * (low + high)


@dataclasses.dataclass(frozen=True)
class _Members:
  numeric: np.ndarray  # [U, NUM_MEMBER_NUMERIC]
  segment: np.ndarray  # [U] int
  explained: np.ndarray  # [U, k] f_u
  preference: np.ndarray  # [U, k] p_u(0)
  drift: np.ndarray  # [U, k] d_u
  strength: np.ndarray  # [U] s_u
  is_late: np.ndarray  # [U] bool
  activity: np.ndarray  # [U] interactions


@dataclasses.dataclass(frozen=True)
class _Items:
  numeric: np.ndarray  # [I, NUM_ITEM_NUMERIC]
  category: np.ndarray  # [I] int
  latent: np.ndarray  # [I, k] q_i
  bias: np.ndarray  # [I] b_i
  popularity: np.ndarray  # [I] exposure probabilities


def _members(rng, num_members, latent_dim, feature_explained, drift, late_fraction, activity):
  """Draws member features, preferences, strengths, lateness and activity."""
  numeric = rng.standard_normal((num_members, NUM_MEMBER_NUMERIC))
  segment = rng.choice(NUM_MEMBER_SEGMENTS, size=num_members,
                       p=np.array([0.35, 0.25, 0.18, 0.12, 0.10]))
  a = rng.standard_normal((NUM_MEMBER_NUMERIC, latent_dim))
  g = rng.standard_normal((NUM_MEMBER_SEGMENTS, latent_dim))
  explained = np.sqrt(feature_explained) * _standardise(numeric @ a + g[segment])
  unexplained = np.sqrt(1.0 - feature_explained) * rng.standard_normal(
      (num_members, latent_dim))
  is_late = np.zeros(num_members, bool)
  is_late[rng.choice(num_members, size=int(round(late_fraction * num_members)),
                     replace=False)] = True
  return _Members(
      numeric=numeric, segment=segment, explained=explained,
      preference=explained + unexplained,
      drift=drift * rng.standard_normal((num_members, latent_dim)),
      strength=rng.gamma(2.0, 0.5, size=num_members),
      is_late=is_late,
      activity=_activity(rng, num_members, *activity))


def _items(rng, num_items, latent_dim):
  """Draws item features, latent vectors (a function of the features) and biases."""
  numeric = rng.standard_normal((num_items, NUM_ITEM_NUMERIC))
  category = rng.integers(0, NUM_ITEM_CATEGORIES, size=num_items)
  b = rng.standard_normal((NUM_ITEM_NUMERIC, latent_dim - 1))
  c = rng.standard_normal((NUM_ITEM_CATEGORIES, latent_dim - 1))
  latent = np.concatenate(
      [np.ones((num_items, 1)), _standardise(numeric @ b + 0.5 * c[category])], axis=1)
  w = rng.standard_normal(NUM_ITEM_NUMERIC) / np.sqrt(NUM_ITEM_NUMERIC)
  popularity = (np.arange(num_items) + 1.0) ** -0.8
  return _Items(numeric=numeric, category=category, latent=latent,
                bias=0.6 * numeric @ w + 0.3 * rng.standard_normal(num_items),
                popularity=rng.permutation(popularity / popularity.sum()))


def _times(rng, member_index, is_late, late_window):
  """tau in [0, 1) per interaction; late members only in the last window."""
  tau = rng.random(member_index.shape[0])
  late = is_late[member_index]
  tau[late] = 1.0 - late_window + late_window * tau[late]
  return tau


def _hour_of_day(timestamp):
  """[N, 2] sin and cos of the hour of day."""
  angle = 2.0 * np.pi * (timestamp % _SECONDS_PER_DAY) / _SECONDS_PER_DAY
  return np.stack([np.sin(angle), np.cos(angle)], axis=1)


def _raw_frame(ids, members, items, member_index, item_index, timestamp, label, context):
  """The raw-schema frame, one row per interaction, in input order.

  `ids` is the pair (member ids [U], item ids [I]).
  """
  def names(prefix, n):
    return np.array([f"{prefix}{j}" for j in range(n)], dtype=object)

  columns = {
      schema.MEMBER_ID_COLUMN: ids[0][member_index],
      schema.ITEM_ID_COLUMN: ids[1][item_index],
      schema.TIMESTAMP_COLUMN: timestamp,
      schema.LABEL_COLUMN: label,
      "member_segment": names("seg", NUM_MEMBER_SEGMENTS)[members.segment[member_index]],
      "item_category": names("cat", NUM_ITEM_CATEGORIES)[items.category[item_index]],
  }
  columns.update(zip(SPEC.member_numeric, members.numeric[member_index].T))
  columns.update(zip(SPEC.item_numeric, items.numeric[item_index].T))
  columns.update(zip(SPEC.context_numeric, context.T))
  return pd.DataFrame(columns)[list(SPEC.all_columns())]


def generate(num_members: int = 2000,
             num_items: int = 500,
             seed: int = 0,
             *,
             latent_dim: int = 4,
             feature_explained: float = 0.25,
             personalisation_scale: float = 3.0,
             drift: float = 0.5,
             median_interactions: float = 10.0,
             activity_tail: float = 2.5,
             max_interactions: int = 300,
             late_fraction: float = 0.1,
             late_window: float = 0.2,
             positive_rate: float = 0.4,
             start_timestamp: int = _DEFAULT_START,
             time_span_days: float = 180.0) -> SyntheticData:
  """Generates seeded synthetic interactions (see the module docstring).

  Args:
    num_members: number of members U.
    num_items: number of items I.
    seed: seed of the one random generator; equal seeds give equal data.
    latent_dim: k, the size of p_u and q_i (dimension 0 is a member bias).
    feature_explained: share of the variance of p_u that member features
      explain, in [0, 1].
    personalisation_scale: scale of the personal term of the logit.
    drift: standard deviation of the change of each p_u component over the
      whole time range.
    median_interactions: median number of interactions per member.
    activity_tail: Pareto tail index of activity; smaller is heavier.
    max_interactions: most interactions of one member.
    late_fraction: share of members that only appear late.
    late_window: the late members' window, as the last share of the range.
    positive_rate: target mean probability of a positive label.
    start_timestamp: first Unix second of the time range.
    time_span_days: length of the time range.

  Returns:
    A `SyntheticData`.

  Raises:
    ValueError: on out-of-range arguments.
  """
  _check_arguments(num_members, num_items, latent_dim, feature_explained,
                   late_fraction, late_window, positive_rate, median_interactions,
                   activity_tail, max_interactions, time_span_days)
  rng = np.random.default_rng(seed)
  members = _members(rng, num_members, latent_dim, feature_explained, drift, late_fraction,
                     (median_interactions, activity_tail, max_interactions))
  items = _items(rng, num_items, latent_dim)
  affinity = 0.5 * rng.standard_normal((NUM_MEMBER_SEGMENTS, NUM_ITEM_CATEGORIES))

  member_index = np.repeat(np.arange(num_members), members.activity)
  item_index = rng.choice(num_items, size=member_index.shape[0], p=items.popularity)
  tau = _times(rng, member_index, members.is_late, late_window)
  span = int(round(time_span_days * _SECONDS_PER_DAY))
  timestamp = start_timestamp + np.floor(tau * span).astype(np.int64)
  context = _hour_of_day(timestamp)

  shared = (affinity[members.segment[member_index], items.category[item_index]] +
            context @ np.array([0.4, 0.2]) + items.bias[item_index])
  q = items.latent[item_index]
  norm = personalisation_scale / np.sqrt(latent_dim)
  p_t = members.preference[member_index] + tau[:, None] * members.drift[member_index]
  personal = norm * members.strength[member_index] * np.einsum("nk,nk->n", p_t, q)
  expected = norm * np.einsum("nk,nk->n", members.explained[member_index], q)
  intercept = _solve_intercept(shared + personal, positive_rate)
  logit = intercept + shared + personal
  label = (rng.random(logit.shape[0]) < _sigmoid(logit)).astype(np.int64)

  ids = _format_ids("m", num_members, 5), _format_ids("i", num_items, 4)
  order = np.argsort(timestamp, kind="stable")
  frame = _raw_frame(ids, members, items, member_index, item_index, timestamp, label, context)
  return SyntheticData(
      interactions=frame.iloc[order].reset_index(drop=True),
      spec=SPEC,
      member_ids=ids[0],
      item_ids=ids[1],
      member_preference=members.preference,
      member_preference_from_features=members.explained,
      member_drift=members.drift,
      personalisation_strength=members.strength,
      member_is_late=members.is_late,
      item_latent=items.latent,
      item_bias=items.bias,
      member_index=member_index[order],
      item_index=item_index[order],
      logit=logit[order],
      feature_logit=(intercept + shared + expected)[order],
      intercept=float(intercept),
      personalisation_scale=float(personalisation_scale),
      start_timestamp=int(start_timestamp),
      end_timestamp=int(start_timestamp + span),
  )


def _check_arguments(num_members, num_items, latent_dim, feature_explained,
                     late_fraction, late_window, positive_rate, median_interactions,
                     activity_tail, max_interactions, time_span_days):
  """Raises ValueError naming the first out-of-range argument of `generate`."""
  checks = (
      ("num_members", num_members, num_members >= 1, ">= 1"),
      ("num_items", num_items, num_items >= 1, ">= 1"),
      ("latent_dim", latent_dim, latent_dim >= 2, ">= 2"),
      ("feature_explained", feature_explained, 0.0 <= feature_explained <= 1.0, "in [0, 1]"),
      ("late_fraction", late_fraction, 0.0 <= late_fraction <= 1.0, "in [0, 1]"),
      ("late_window", late_window, 0.0 < late_window <= 1.0, "in (0, 1]"),
      ("positive_rate", positive_rate, 0.0 < positive_rate < 1.0, "in (0, 1)"),
      ("median_interactions", median_interactions, median_interactions > 0, "> 0"),
      ("activity_tail", activity_tail, activity_tail > 0, "> 0"),
      ("max_interactions", max_interactions, max_interactions >= 1, ">= 1"),
      ("time_span_days", time_span_days, time_span_days > 0, "> 0"),
  )
  for name, value, ok, expected in checks:
    if not ok:
      raise ValueError(f"{name} must be {expected}, got {value!r}")


def write_csv(data: SyntheticData, path: str, float_format: Optional[str] = "%.6g") -> str:
  """Writes `data.interactions` as a raw-schema CSV (header `spec.all_columns()`).

  Args:
    data: the generated data.
    path: the file to write; missing parent directories are created.
    float_format: printf format of float columns (None: full precision).

  Returns:
    `path`.
  """
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  data.interactions.to_csv(path, index=False, columns=list(data.spec.all_columns()),
                           float_format=float_format)
  return path
