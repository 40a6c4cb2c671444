"""Shared serving fixtures: real servable SavedModels built in seconds with `tfx_pipeline.testing`.

`saved_models` (session-scoped) exports, once: two personalised versions with
different member embeddings and a plain Trainer ("global") export. Tests copy
them into their own base path with `add_version`, so hot-swap and corruption
tests never touch each other.
"""
import dataclasses
import os
import shutil

import pytest

from limaml_keras import serving_contract
from tfx_pipeline.models import export
from tfx_pipeline import testing


@dataclasses.dataclass(frozen=True)
class SavedModels:
  """Paths of exported SavedModels and what requests need."""
  personalised_v1: str
  personalised_v2: str
  global_model: str
  feature_spec: dict
  embedding_dim: int


def add_version(source: str, base_path: str, version: int) -> str:
  """Copies a SavedModel into `<base_path>/<version>` atomically (temp dir + rename)."""
  os.makedirs(base_path, exist_ok=True)
  scratch = os.path.join(base_path, f".tmp-{version}")
  shutil.copytree(source, scratch)
  target = os.path.join(base_path, str(version))
  os.rename(scratch, target)
  return target


def request_examples(feature_spec, member_ids=("7", "8", "9"), n=None):
  """Serialized raw tf.Examples for `member_ids` (9 is unknown: cold start)."""
  rows = [{"member_id": m, "item_id": "x", "age": 25.0, "year": 2000} for m in member_ids]
  if n is not None:
    rows = [rows[i % len(rows)] for i in range(n)]
  return [serving_contract.raw_example(r, feature_spec).SerializeToString() for r in rows]


@pytest.fixture(scope="session")
def saved_models(tmp_path_factory) -> SavedModels:
  root = tmp_path_factory.mktemp("saved_models")
  tft_output = testing.transform_output(str(root / "transform"))
  model = testing.untrained_model(tft_output)
  v1 = testing.personalized_model(model, tft_output, str(root / "personalised_v1"))
  v2 = testing.personalized_model(
      model, tft_output, str(root / "personalised_v2"),
      member_embeddings=testing.embeddings(seed=2))
  global_model = export.export_serving_model(model, tft_output, str(root / "global"))
  return SavedModels(v1, v2, global_model, serving_contract.serving_feature_spec(tft_output.raw_feature_spec()),
                     testing.EMBEDDING_DIM)


@pytest.fixture(scope="session")
def server(saved_models, tmp_path_factory):
  """A running DevServer on free ports: `limaml` (personalised v1) and `global` (Trainer export)."""
  # pylint: disable=g-import-not-at-top
  from serving import dev_server
  root = tmp_path_factory.mktemp("served")
  add_version(saved_models.personalised_v1, str(root / "limaml"), 1)
  add_version(saved_models.global_model, str(root / "global"), 1)
  with dev_server.DevServer(str(root / "limaml"), grpc_port=0, rest_port=0,
                            models={"global": str(root / "global")}) as running:
    yield running


@pytest.fixture(scope="session")
def grpc_channel(server):
  # pylint: disable=g-import-not-at-top
  import grpc
  with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
    yield channel


@pytest.fixture(scope="session")
def rest_url(server) -> str:
  return f"http://127.0.0.1:{server.rest_port}/v1/models"


@pytest.fixture
def interactions_csv(tmp_path) -> str:
  """The tiny data (`testing.ROWS`, newest row first) as a raw CSV with its features.json."""
  # pylint: disable=g-import-not-at-top
  import csv
  from limaml_keras import schema
  # pylint: enable=g-import-not-at-top
  path = tmp_path / "data" / "interactions.csv"
  path.parent.mkdir()
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(testing.RAW_FEATURE_SPEC)
    for row in reversed(testing.ROWS):  # File order must not matter: timestamps do.
      writer.writerow(v.decode() if isinstance(v, bytes) else v for v in row)
  schema.save_spec(testing.SPEC, str(path.parent / schema.SPEC_FILE_NAME))
  return str(path)


@pytest.fixture(scope="session")
def tiny_catalog(saved_models):
  """A `limaml_keras.catalog.Catalog` of the tiny data, typed by the model's feature spec."""
  from limaml_keras import catalog as catalog_lib  # pylint: disable=g-import-not-at-top
  rows = [dict(zip(testing.RAW_FEATURE_SPEC, row)) for row in testing.ROWS]
  return catalog_lib.Catalog.from_rows(rows, testing.SPEC, saved_models.feature_spec)
