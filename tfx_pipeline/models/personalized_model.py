"""Exports a personalised serving SavedModel: Global Block + in-graph member table.

The SavedModel (tag `serve`, for a TF Serving `<model_base_path>/<version>`
directory) holds the trained model, its Transform layer and a member -> meta
embedding table:

* the member ids as a vocabulary **asset file** (`member_ids.txt`, one id a
  line) that initialises a `tf.lookup.StaticHashTable` (id -> line number)
  when TF Serving loads the model. An asset, rather than a graph constant of
  keys, keeps the GraphDef small for millions of members (no 2 GB proto limit,
  no parsing a huge constant at load time) and lets TF Serving ship the file
  with the version; ids must therefore contain no line breaks;
* the embeddings as a non-trainable `tf.Variable` `[M + 1, d]` (row 0 unused,
  row i + 1 = the member on line i), stored in the variables checkpoint
  rather than as a graph constant.

Signatures:

* `serving_default`: `examples` string `[N]` of serialized raw `tf.Example`s
  (as the Trainer model's, `tfx_pipeline.models.export`) -> `probabilities` `[N]`,
  `logits` `[N]` and `personalised` bool `[N]`. Each example's raw `member_id` (as a string: the
  Transform output `member_key`) is looked up in the table; a member not in it
  gets the cold-start embedding, the un-adapted Meta Block on their transformed
  member features (`model.embed`, with their ID row for a model with a
  member-ID embedding), computed in the graph.
* `predict_with_embedding`: `examples` plus `meta_embedding` `[N, d]` supplied
  by the caller (for an external key-value store when the table is too big
  for the SavedModel) -> `probabilities`, `logits`.
* `member_embedding`: `member_id` string `[N]` -> `meta_embedding` `[N, d]`
  (zeros for a miss) and `personalised`: the table alone, for checks.

Example:

```python
export_personalized_model(model, tft_output, ["u1", "u2"], embeddings,
                          "/serving/limaml/1700000000")
```
"""

import os
import tempfile
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from limaml_keras import tensor_layout
from limaml_keras import model as model_lib
from limaml_keras import serving_contract
from tfx_pipeline.models import export
from tfx_pipeline.models import preprocessing

PREDICT_WITH_EMBEDDING_SIGNATURE = serving_contract.PREDICT_WITH_EMBEDDING_SIGNATURE
MEMBER_EMBEDDING_SIGNATURE = "member_embedding"
MEMBER_ID_INPUT = tensor_layout.MEMBER_ID
MEMBER_IDS_ASSET = "member_ids.txt"
#: Checkpoint key of the table's embeddings (`_PersonalizedServing.table.embeddings`).
_TABLE_VARIABLE = "table/embeddings/"


def _check_members(member_ids: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
  """Validates the table's contents; returns the embeddings as float32 `[M, d]`."""
  embeddings = np.asarray(embeddings, dtype=np.float32)
  if embeddings.ndim != 2 or embeddings.shape[0] != len(member_ids):
    raise ValueError(f"embeddings must be [len(member_ids)={len(member_ids)}, d], "
                     f"got shape {embeddings.shape}.")
  if not np.isfinite(embeddings).all():
    raise ValueError("embeddings must be finite.")
  if len(set(member_ids)) != len(member_ids):
    raise ValueError("member_ids must be unique.")
  bad = [m for m in member_ids if not m or "\n" in m or "\r" in m]
  if bad:
    raise ValueError(f"member ids must be non-empty and one-line, got {bad[:3]!r}.")
  return embeddings


def read_member_table(export_dir: str) -> Tuple[List[str], np.ndarray]:
  """`(member_ids, embeddings [M, d])` of a personalised SavedModel, read from its files.

  Reads the `member_ids.txt` asset and the embeddings variable from the
  variables checkpoint (no graph is loaded).

  Raises:
    ValueError: `export_dir` is not a personalised SavedModel, or its files disagree.
  """
  ids_path = os.path.join(export_dir, "assets", MEMBER_IDS_ASSET)
  if not tf.io.gfile.exists(ids_path):
    raise ValueError(f"{export_dir!r} is not a personalised SavedModel (no assets/"
                     f"{MEMBER_IDS_ASSET})")
  with tf.io.gfile.GFile(ids_path) as f:
    member_ids = f.read().splitlines()
  reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
  names = [n for n in reader.get_variable_to_shape_map() if n.startswith(_TABLE_VARIABLE)]
  if len(names) != 1:
    raise ValueError(f"{export_dir!r} has no member embeddings variable {_TABLE_VARIABLE!r}")
  embeddings = reader.get_tensor(names[0])[1:]  # Row 0: the miss row.
  if embeddings.shape[0] != len(member_ids):
    raise ValueError(f"{export_dir!r}: {len(member_ids)} member ids but "
                     f"{embeddings.shape[0]} embeddings")
  return member_ids, embeddings.astype(np.float32)


def write_member_ids(member_ids: Sequence[str], directory: str) -> str:
  """Writes the ids, one a line, to `directory/MEMBER_IDS_ASSET`; returns the path."""
  path = os.path.join(directory, MEMBER_IDS_ASSET)
  with open(path, "w", encoding="utf-8", newline="\n") as f:
    f.write("".join(f"{m}\n" for m in member_ids))
  return path


class MemberEmbeddingTable(tf.Module):
  """Member id -> meta embedding, saved as a vocabulary asset + a variable.

  Args:
    member_ids_path: text file of the M member ids, one a line (it becomes a
      SavedModel asset); line i is the member of `embeddings[i]`.
    embeddings: float32 `[M, d]`.
  """

  def __init__(self, member_ids_path: str, embeddings: np.ndarray):
    super().__init__(name="member_embedding_table")
    initializer = tf.lookup.TextFileInitializer(
        member_ids_path, key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
        value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER)
    self.table = tf.lookup.StaticHashTable(initializer, default_value=-1)
    padded = np.concatenate([np.zeros([1, embeddings.shape[1]], np.float32), embeddings])
    self.embeddings = tf.Variable(padded, trainable=False, name="meta_embeddings")

  @property
  def embedding_dim(self) -> int:
    return int(self.embeddings.shape[-1])

  def lookup(self, member_ids: tf.Tensor):
    """`(embeddings [N, d], personalised bool [N])`; a miss gets row 0 (zeros)."""
    rows = self.table.lookup(member_ids) + 1
    return tf.gather(self.embeddings, rows), rows > 0


class _PersonalizedServing(tf.Module):
  """Tracks what the signatures use, so `tf.saved_model.save` keeps it."""

  def __init__(self, model: model_lib.PersonalizedRanker, tft_output: tft.TFTransformOutput,
               table: MemberEmbeddingTable):
    super().__init__(name="personalized_serving")
    self.model = model
    self.tft_layer = tft_output.transform_features_layer()
    self.table = table
    self._raw_spec = serving_contract.serving_feature_spec(tft_output.raw_feature_spec())

  def transformed(self, examples):
    return export.transform_requests(self.tft_layer, self._raw_spec, examples)

  def serve(self, examples):
    transformed = self.transformed(examples)
    batch = export.interaction_batch(self.model, transformed)
    member_ids = tf.reshape(transformed[preprocessing.MEMBER_KEY], [-1])
    looked_up, personalised = self.table.lookup(member_ids)
    cold = self.model.embed(batch[tensor_layout.MEMBER_FEATURES], batch[tensor_layout.MEMBER_ID])
    embedding = tf.where(personalised[:, tf.newaxis], looked_up, cold)
    outputs = export.score_outputs(self.model, {**batch, tensor_layout.META_EMBEDDING: embedding})
    return {**outputs, serving_contract.PERSONALISED: personalised}

  def serve_with_embedding(self, examples, meta_embedding):
    batch = export.interaction_batch(self.model, self.transformed(examples))
    return export.score_outputs(
        self.model, {**batch, tensor_layout.META_EMBEDDING: export.checked_embedding(meta_embedding)})


def table_signature(table: MemberEmbeddingTable):
  """The `member_embedding` signature's concrete function for `table`."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=MEMBER_ID_INPUT)])
  def member_embedding(member_id):
    embedding, personalised = table.lookup(member_id)
    return {tensor_layout.META_EMBEDDING: embedding, serving_contract.PERSONALISED: personalised}

  return member_embedding.get_concrete_function()


def _signatures(serving: _PersonalizedServing) -> Dict[str, tf.types.experimental.ConcreteFunction]:
  examples = tf.TensorSpec([None], tf.string, name=serving_contract.EXAMPLES)
  embedding = tf.TensorSpec([None, serving.table.embedding_dim], tf.float32,
                            name=tensor_layout.META_EMBEDDING)
  serve = tf.function(serving.serve, input_signature=[examples])
  with_embedding = tf.function(serving.serve_with_embedding,
                               input_signature=[examples, embedding])
  return {serving_contract.SERVING_SIGNATURE: serve.get_concrete_function(),
          PREDICT_WITH_EMBEDDING_SIGNATURE: with_embedding.get_concrete_function(),
          MEMBER_EMBEDDING_SIGNATURE: table_signature(serving.table)}


def export_personalized_model(model: model_lib.PersonalizedRanker,
                              tft_output: tft.TFTransformOutput,
                              member_ids: Sequence[str],
                              embeddings: np.ndarray,
                              export_dir: str) -> str:
  """Saves the personalised serving SavedModel (module docstring) to `export_dir`.

  Args:
    model: the trained, built model (its Meta Block gives the cold start).
    tft_output: the Transform output the model was trained on.
    member_ids: the M raw member ids, as strings (`str(id)` for integer ids).
    embeddings: `[M, d]` meta embeddings, row i for `member_ids[i]`; d must be
      the model's embedding size.
    export_dir: the version directory, `<model_base_path>/<version>`.

  Returns:
    `export_dir`.

  Raises:
    ValueError: on duplicate or multi-line ids, or mis-shaped embeddings.
  """
  member_ids = [str(m) for m in member_ids]
  embeddings = _check_members(member_ids, embeddings)
  if embeddings.shape[1] != model.meta_block.embedding_dim:
    raise ValueError(f"embeddings have d={embeddings.shape[1]}, the model "
                     f"{model.meta_block.embedding_dim}.")
  with tempfile.TemporaryDirectory() as scratch:
    table = MemberEmbeddingTable(write_member_ids(member_ids, scratch), embeddings)
    serving = _PersonalizedServing(model, tft_output, table)
    tf.saved_model.save(serving, export_dir, signatures=_signatures(serving))
  return export_dir
