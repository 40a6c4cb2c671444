"""SavedModel warmup records: TF Serving runs them before it serves a new version.

TF Serving (with `--enable_model_warmup`, the default) reads
`<version>/assets.extra/tf_serving_warmup_requests`, a TFRecord file of
`PredictionLog`s, and replays each request once the version has loaded and
before it marks the version AVAILABLE: the first real requests then do not pay
for graph initialisation, lookup-table loading and memory allocation (the
long tail after every push). It reads at most 1000 records.

The requests are built by `limaml_keras.serving_requests` from a `limaml_keras.catalog.Catalog`,
exactly as the client builds them: a few of the most active members plus one
member id not in the data (the cold-start path), each ranking the most popular
items (`num_candidates`, 100 by default, the size of a production request).

Write them into the SavedModel **before** it is pushed (the version directory
the Pusher renames into place), so a version never appears without them:

```python
write_warmup_from_rows(export_dir, rows, spec, serving_contract.serving_feature_spec(tft_output.raw_feature_spec()))
```

Both exporters make this one call: `MetaEmbeddingGen` with a sample of
ExampleGen's raw training examples, `tfx_pipeline.ops.refresh` with the raw
interaction CSVs it refreshes from.
"""

import itertools
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from limaml_keras import schema
from limaml_keras import catalog as catalog_lib
from limaml_keras import serving_requests as requests_lib
from limaml_keras import serving_contract

ASSETS_EXTRA = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
#: TF Serving reads at most this many warmup records.
MAX_WARMUP_REQUESTS = 1000
#: Raw rows `write_warmup_from_rows` reads at most (the catalog is held in memory).
MAX_CATALOG_ROWS = 20_000
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def warmup_path(saved_model_dir: str) -> str:
  """`<saved_model_dir>/assets.extra/tf_serving_warmup_requests`."""
  return os.path.join(saved_model_dir, ASSETS_EXTRA, WARMUP_FILE)


def write_warmup_requests(saved_model_dir: str,
                          requests: Sequence[predict_pb2.PredictRequest],
                          model_name: Optional[str] = None) -> str:
  """Writes `requests` as the warmup records of a SavedModel.

  Args:
    saved_model_dir: a SavedModel directory (a version, before it is pushed).
    requests: 1 to `MAX_WARMUP_REQUESTS` predict requests.
    model_name: when given, set as each request's `model_spec.name` (TF Serving
      ignores it during warmup; it documents the records).

  Returns:
    The path of the warmup file (replaced if it existed).

  Raises:
    FileNotFoundError: when `saved_model_dir` holds no SavedModel.
    ValueError: when there are no requests or more than `MAX_WARMUP_REQUESTS`,
      or one is not a `PredictRequest`.
  """
  if not any(tf.io.gfile.exists(os.path.join(saved_model_dir, f)) for f in _SAVED_MODEL_FILES):
    raise FileNotFoundError(f"no SavedModel (saved_model.pb) in {saved_model_dir}")
  requests = list(requests)
  if not requests:
    raise ValueError("no warmup requests to write")
  if len(requests) > MAX_WARMUP_REQUESTS:
    raise ValueError(f"{len(requests)} warmup requests; TF Serving reads at most "
                     f"{MAX_WARMUP_REQUESTS}")
  path = warmup_path(saved_model_dir)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for number, request in enumerate(requests):
      if not isinstance(request, predict_pb2.PredictRequest):
        raise ValueError(f"warmup request {number} is a {type(request).__name__}, "
                         "not a PredictRequest")
      if model_name is not None:
        request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
        request.model_spec.name = model_name
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path


def read_warmup_requests(saved_model_dir: str) -> List[predict_pb2.PredictRequest]:
  """The predict requests of a SavedModel's warmup file.

  Raises:
    FileNotFoundError: when there is no warmup file.
    ValueError: when a record is not a `PredictionLog` with a predict log.
  """
  path = warmup_path(saved_model_dir)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"no warmup file {path}")
  requests = []
  for number, record in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
    log = prediction_log_pb2.PredictionLog()
    try:
      log.ParseFromString(record)
    except Exception as e:  # pylint: disable=broad-except  (protobuf's DecodeError)
      raise ValueError(f"{path}: record {number} is not a PredictionLog: {e}") from None
    if not log.HasField("predict_log"):
      raise ValueError(f"{path}: record {number} holds no predict_log")
    requests.append(log.predict_log.request)
  return requests


def replay_warmup_requests(saved_model_dir: str,
                           requests: Optional[Sequence[predict_pb2.PredictRequest]] = None
                           ) -> List[Dict[str, np.ndarray]]:
  """Runs warmup requests as TF Serving does: TF1 SavedModel loader, then `session.run`.

  TF Serving does not load a version whose warmup fails, so an exporter checks
  its records with this before the version is pushed.

  Args:
    saved_model_dir: a SavedModel directory.
    requests: the requests to run; default: the SavedModel's warmup records.

  Returns:
    Each request's outputs (output name -> array), in order.

  Raises:
    FileNotFoundError: when there is no warmup file (and no `requests`).
    ValueError: naming the request whose signature or inputs the SavedModel
      lacks, or whose run fails.
  """
  if requests is None:
    requests = read_warmup_requests(saved_model_dir)
  outputs = []
  with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(
        session, [tf.saved_model.SERVING], saved_model_dir)
    for number, request in enumerate(requests):
      name = request.model_spec.signature_name or serving_contract.SERVING_SIGNATURE
      if name not in meta_graph.signature_def:
        raise ValueError(f"{saved_model_dir}: warmup request {number} asks for signature "
                         f"{name!r}; the SavedModel has {sorted(meta_graph.signature_def)}")
      signature = meta_graph.signature_def[name]
      unknown = sorted(set(request.inputs) - set(signature.inputs))
      if unknown:
        raise ValueError(f"{saved_model_dir}: warmup request {number} has inputs {unknown} "
                         f"that signature {name!r} lacks (it takes {sorted(signature.inputs)})")
      feed = {signature.inputs[k].name: tf.make_ndarray(v) for k, v in request.inputs.items()}
      try:
        outputs.append(session.run({k: v.name for k, v in signature.outputs.items()}, feed))
      except tf.errors.OpError as e:
        raise ValueError(f"{saved_model_dir}: warmup request {number} fails: "
                         f"{e.message}") from None
  return outputs


def cold_member_id(catalog: catalog_lib.Catalog) -> str:
  """A member id that no model table holds, for the cold-start warmup request.

  `Catalog.unknown_member_id` is only new to the catalog: of a sample of the
  data (`write_warmup_from_rows`), the next integer id may well be a member
  outside it. Integer ids take the largest int64 instead.
  """
  if catalog.feature_spec[schema.MEMBER_ID_COLUMN].dtype.is_integer:
    largest = str(np.iinfo(np.int64).max)
    if largest not in catalog.member_features:
      return largest
  return catalog.unknown_member_id()


def build_warmup_requests(catalog: catalog_lib.Catalog, model_name: str = "limaml",
                          num_members: int = 3, num_candidates: int = 100,
                          signature_name: str = serving_contract.SERVING_SIGNATURE
                          ) -> List[predict_pb2.PredictRequest]:
  """Realistic ranking requests (module docstring): `num_members` known members + a cold one.

  The cold one is `cold_member_id`, with the catalog's typical member features.

  Args:
    catalog: raw member and item features (the training data's).
    model_name: the model's name in the server's config.
    num_members: how many of the most active members to include.
    num_candidates: candidate items per request (the most popular ones).
    signature_name: the signature the requests run.

  Returns:
    `min(num_members, members in the catalog) + 1` requests.
  """
  if num_members < 0 or num_candidates < 1:
    raise ValueError(f"num_members must be >= 0 and num_candidates >= 1, got {num_members} "
                     f"and {num_candidates}")
  items = catalog.items(catalog.popular_items(num_candidates))
  members = [catalog.member(m)[0] for m in catalog.active_members(num_members)]
  members.append(catalog.member(cold_member_id(catalog))[0])
  return [requests_lib.predict_request(
      requests_lib.serialized_examples(member, items, catalog.feature_spec),
      model_name, signature_name) for member in members]


def write_warmup_from_rows(saved_model_dir: str, rows: Iterable[Mapping[str, Any]],
                           feature_spec: schema.FeatureSpec,
                           raw_feature_spec: Mapping[str, tf.io.FixedLenFeature],
                           model_name: str = "limaml", max_rows: int = MAX_CATALOG_ROWS,
                           source: str = "rows") -> str:
  """Writes the warmup records of a SavedModel built from raw interaction rows.

  A `Catalog` of the first `max_rows` rows (the rest is not read) gives the
  requests of `build_warmup_requests`; they are replayed on the SavedModel
  (`replay_warmup_requests`) once written, so a version whose warmup would
  fail to load in TF Serving is never pushed.

  Args:
    saved_model_dir: a SavedModel directory (a version, before it is pushed).
    rows: raw interaction rows (CSV dicts or `catalog_lib.rows_from_examples`).
    feature_spec: which raw columns feed which side of the model.
    raw_feature_spec: the raw serving feature spec (`serving_contract.serving_feature_spec`:
      no label, no timestamp).
    model_name: the model's name in the server's config.
    max_rows: rows read at most.
    source: named in errors (for example the input files).

  Returns:
    The path of the warmup file.

  Raises:
    FileNotFoundError: when `saved_model_dir` holds no SavedModel.
    ValueError: when `max_rows` < 1, there are no rows, a row lacks a column
      or the spec lacks one (see `Catalog.from_rows`), or a request fails to run.
  """
  if max_rows < 1:
    raise ValueError(f"max_rows must be >= 1, got {max_rows}")
  catalog = catalog_lib.Catalog.from_rows(itertools.islice(rows, max_rows), feature_spec,
                                          raw_feature_spec, source=source)
  path = write_warmup_requests(saved_model_dir,
                               build_warmup_requests(catalog, model_name=model_name),
                               model_name=model_name)
  try:
    replay_warmup_requests(saved_model_dir)
  except ValueError:
    tf.io.gfile.remove(path)  # Never leave records TF Serving would fail to load on.
    raise
  return path
