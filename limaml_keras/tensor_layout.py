"""Names, dtypes and layout of the tensors that flow through LiMAML.

A *task batch* holds T tasks (members). Each task has one row of member-side
inputs and up to S support and Q query interactions, padded and masked::

    member_id                 int64   [T]        0 = unknown / out-of-vocabulary
    member_features           float32 [T, Dm]
    support_item_id           int64   [T, S]     0 = unknown / padding
    support_item_features     float32 [T, S, Di]
    support_context_features  float32 [T, S, Dc]
    support_label             float32 [T, S]     in {0, 1}
    support_mask              float32 [T, S]     1 = real interaction, 0 = padding
    query_...                 same five keys with Q instead of S

An *interaction batch* (what the ranker scores at serving time) is flat::

    member_id, member_features [N, Dm], item_id [N], item_features [N, Di],
    context_features [N, Dc], optional meta_embedding [N, d], optional label [N]
"""

#: Per-interaction key of the raw member id (bytes/str): what tasks are grouped by
#: (unknown members all share `member_id` 0). The Transform output, the pandas
#: `Preprocessor`, the task records and the Beam jobs all use this one name.
MEMBER_KEY = "member_key"
#: Per-interaction key of the interaction time, int64 Unix seconds.
TIMESTAMP = "timestamp"

MEMBER_ID = "member_id"
MEMBER_FEATURES = "member_features"
ITEM_ID = "item_id"
ITEM_FEATURES = "item_features"
CONTEXT_FEATURES = "context_features"
LABEL = "label"
MASK = "mask"
META_EMBEDDING = "meta_embedding"
#: What the Global Block's bilinear meta × item term reads instead of the meta
#: embedding when given (`PersonalizedRanker(bilinear_evidence=True)`).
META_EVIDENCE = "meta_evidence"

SUPPORT = "support"
QUERY = "query"

#: Per-interaction keys that appear once per side (support/query) in a task batch.
INTERACTION_KEYS = (ITEM_ID, ITEM_FEATURES, CONTEXT_FEATURES, LABEL, MASK)


def side_key(side: str, name: str) -> str:
  """Returns the task-batch key of interaction field `name` on `side`.

  Args:
    side: `SUPPORT` or `QUERY`.
    name: one of `INTERACTION_KEYS`.

  Returns:
    For example `side_key("support", "label") == "support_label"`.
  """
  if side not in (SUPPORT, QUERY):
    raise ValueError(f"side must be {SUPPORT!r} or {QUERY!r}, got {side!r}")
  return f"{side}_{name}"


def task_keys() -> tuple:
  """All keys of a task batch, in a stable order."""
  return (MEMBER_ID, MEMBER_FEATURES) + tuple(
      side_key(side, name) for side in (SUPPORT, QUERY) for name in INTERACTION_KEYS)
