"""Refresh: new interactions -> new meta embeddings -> a new serving version, no retraining.

    limaml embeddings refresh --model TRAINER_SAVED_MODEL --transform-graph DIR \
        --interactions 'new/*.csv' --model-base-path /serving/limaml [--max-support N]

Semantics:

* input: raw interaction CSVs holding, for each member to refresh, their
  *recent interaction window* (the job keeps each member's latest
  `max_support` of them as support; older interactions of the member that
  are not in the files are not looked up);
* base: the table of the currently served version (the latest version under
  `model_base_path`; none yet: an empty table);
* members present in the input get a new embedding (rows replaced), members
  new to the table are added, every other member keeps their served
  embedding exactly;
* the new version is the already-trained model (`--model`, the Trainer's
  SavedModel with its `adapt` signature) exported with the merged table
  (`tfx_pipeline.models.personalized_model`) and pushed atomically
  (`tfx_pipeline.ops.push`). The base version must come from the same trained
  model; after retraining, run the full pipeline instead;
* concurrent refreshes of one base path are serialised: the base is read,
  merged and pushed under an exclusive `fcntl.flock` on the base path
  directory (`base_path_lock`; the embedding job itself runs outside it), so
  two refreshes started together both land, the later one on top of the
  earlier; one waiting longer than `lock_timeout_s` fails with a clear error
  and pushes nothing. The lock needs a local or mounted base path; on a remote
  file system (`gs://...`) it is not taken (a warning says so): run one
  refresh at a time there;
* input rows are checked as `limaml pipeline run` checks them; dropped rows,
  members with every row dropped and members whose rows all reference items
  unknown to the model (skipped: they keep their served embedding) are counted
  in `RefreshResult.counters` and described in `RefreshResult.notes`;
* the new version carries TF Serving warmup records built from the input
  CSVs (`limaml_keras.warmup.write_warmup_from_rows`, the first
  `limaml_keras.warmup.MAX_CATALOG_ROWS` rows), which needs the data's feature
  spec: given, or the `features.json` beside the first input file.
"""

import contextlib
import dataclasses
import fcntl
import logging
import os
import shutil
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft

from limaml_keras import schema
from limaml_keras import task_settings
from limaml_keras import warmup
from tfx_pipeline.beam import embedding_job
from limaml_keras import serving_contract
from tfx_pipeline.beam import member_supports
from tfx_pipeline.models import personalized_model
from tfx_pipeline.ops import push


@dataclasses.dataclass(frozen=True)
class RefreshResult:
  """What a refresh did.

  Attributes:
    version_path: the pushed version directory.
    base_version: the version whose table was the base (None: there was none).
    members: members in the new table.
    updated: members whose served embedding was replaced.
    added: members new to the table.
    counters: the embedding job's counters and the input checks' counts
      (`member_supports.CsvInput.counts`).
    notes: one line per fallback taken on the input (dropped rows, skipped
      members, ...), for the user to read.
  """
  version_path: str
  base_version: Optional[int]
  members: int
  updated: int
  added: int
  counters: Dict[str, int]
  notes: Tuple[str, ...] = ()


#: Seconds a refresh waits for another refresh of the same base path.
DEFAULT_LOCK_TIMEOUT_S = 600.0
_LOCK_POLL_S = 0.2


@contextlib.contextmanager
def base_path_lock(model_base_path: str, timeout_s: float = DEFAULT_LOCK_TIMEOUT_S
                   ) -> Iterator[None]:
  """Holds an exclusive `fcntl.flock` on the base path directory (created when missing).

  Raises:
    ValueError: when another process holds it for more than `timeout_s`.
  """
  if "://" in model_base_path:
    logging.warning("%s is not a local path: concurrent refreshes are not serialised there; "
                    "run one at a time", model_base_path)
    yield
    return
  os.makedirs(model_base_path, exist_ok=True)
  descriptor = os.open(model_base_path, os.O_RDONLY)
  try:
    deadline = time.monotonic() + timeout_s
    while True:
      try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        break
      except BlockingIOError:
        if time.monotonic() >= deadline:
          raise ValueError(f"another refresh of {model_base_path} has held its lock for more "
                           f"than {timeout_s:g} s; nothing was pushed, try again when it "
                           "has finished") from None
        time.sleep(_LOCK_POLL_S)
    yield
  finally:
    os.close(descriptor)  # Releases the lock.


def merge_tables(base_ids: Sequence[str], base: np.ndarray, new_ids: Sequence[str],
                 new: np.ndarray) -> Tuple[List[str], np.ndarray, int, int]:
  """The base table with the new rows replacing or added; ids sorted.

  Returns:
    `(member_ids, embeddings, updated, added)`.

  Raises:
    ValueError: when the embedding sizes differ.
  """
  if len(base_ids) and base.shape[1] != new.shape[1]:
    raise ValueError(f"the served table has d={base.shape[1]} but the model gives "
                     f"d={new.shape[1]}: the served version comes from another model")
  rows = dict(zip(base_ids, base))
  updated = sum(1 for m in new_ids if m in rows)
  rows.update(zip(new_ids, new))
  ids = sorted(rows)
  embeddings = (np.stack([rows[m] for m in ids]).astype(np.float32) if ids
                else np.zeros([0, new.shape[1]], np.float32))
  return ids, embeddings, updated, len(new_ids) - updated


def served_table(model_base_path: str) -> Tuple[Optional[int], List[str], np.ndarray]:
  """`(version, member_ids, embeddings)` of the latest served version; `(None, [], [0, 0])`."""
  version = push.latest_version(model_base_path)
  if version is None:
    return None, [], np.zeros([0, 0], np.float32)
  ids, embeddings = personalized_model.read_member_table(
      push.version_path(model_base_path, version))
  return version, ids, embeddings


def _warmup_rows(csv_input: member_supports.CsvInput) -> Iterator[Dict[str, Any]]:
  """The input's kept rows as dicts of text, read lazily."""
  columns = member_supports.validation_spec(csv_input.raw_feature_spec).all_columns()
  for _, row in csv_input.kept_rows():
    yield dict(zip(columns, row))


def refresh(model_dir: str, transform_graph_dir: str, interactions: Sequence[str],
            model_base_path: str, max_support: int = task_settings.DEFAULTS.max_support,
            beam_args: Sequence[str] = (),
            batch_size: int = 256, version: Optional[int] = None,
            feature_spec: Optional[schema.FeatureSpec] = None, as_of: Optional[int] = None,
            lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S) -> RefreshResult:
  """Regenerates the embeddings of the members in `interactions` and pushes a new version.

  Args:
    model_dir: the Trainer's SavedModel (`adapt` signature; loads as the Keras model).
    transform_graph_dir: the Transform graph it was trained with.
    interactions: raw interaction CSV files, glob patterns or directories.
    model_base_path: the TF Serving model base path (versions inside).
    max_support: latest interactions kept per member.
    beam_args: Beam pipeline arguments of the embedding job.
    batch_size: members per `adapt` call.
    version: the new version number (default: `push.push_version`'s).
    feature_spec: the data's feature spec, for the warmup records (default:
      the `features.json` beside the first input file).
    as_of: later interactions are dropped (default: now).
    lock_timeout_s: how long to wait for another refresh of `model_base_path`.

  Returns:
    What was done.

  Raises:
    FileNotFoundError, ValueError: bad inputs (see `member_supports.run_csv`),
      no feature spec, a served version that is not a personalised model of
      this model, the lock held by another refresh for too long.
  """
  if version is not None and tf.io.gfile.exists(push.version_path(model_base_path, version)):
    raise ValueError(f"version {version} exists already under {model_base_path!r}")
  tft_output = tft.TFTransformOutput(transform_graph_dir)
  csv_input = member_supports.check_csv_input(list(interactions), tft_output.raw_feature_spec(),
                                              as_of, member_supports.known_items(tft_output))
  files = csv_input.files
  if feature_spec is None:  # Fails early, before the job, when there is none.
    feature_spec = schema.load_spec(schema.find_spec_file(files[0]))
  served_table(model_base_path)  # Fails early on a bad base; read again under the lock.
  scratch = tempfile.mkdtemp(prefix="limaml-refresh-")
  try:
    job_output = os.path.join(scratch, "embeddings")
    model_version = os.path.basename(os.path.normpath(model_dir))
    counters = member_supports.run_csv(model_dir, transform_graph_dir, (), job_output,
                                       model_version, max_support=max_support,
                                       beam_args=beam_args, batch_size=batch_size,
                                       csv_input=csv_input)
    notes = tuple(counters.pop("notes"))
    new_ids, new, _ = embedding_job.read_table(job_output)
    with base_path_lock(model_base_path, lock_timeout_s):
      base_version, base_ids, base = served_table(model_base_path)
      if version is not None and tf.io.gfile.exists(push.version_path(model_base_path, version)):
        raise ValueError(f"version {version} exists already under {model_base_path!r}")
      ids, embeddings, updated, added = merge_tables(base_ids, base, new_ids, new)
      export_dir = os.path.join(scratch, "export")
      personalized_model.export_personalized_model(
          tf.keras.models.load_model(model_dir), tft_output, ids, embeddings, export_dir)
      warmup.write_warmup_from_rows(
          export_dir, _warmup_rows(csv_input), feature_spec,
          serving_contract.serving_feature_spec(tft_output.raw_feature_spec()),
          source=", ".join(files[:3]) + (" ..." if len(files) > 3 else ""))
      path = push.push_version(export_dir, model_base_path, version)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return RefreshResult(version_path=path, base_version=base_version, members=len(ids),
                       updated=updated, added=added, counters=counters, notes=notes)
