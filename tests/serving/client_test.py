"""Tests of serving.client over loopback against the real dev server (gRPC and REST).

The session's server (tests/serving_fixtures.py) serves `limaml`, a personalised
SavedModel of `tfx_pipeline.testing` (members 7 and 8 in its table) as version
1, and `global`, the Trainer export without member table. Timeouts are tested
against a stalled peer: a TCP socket that accepts connections and never answers.
"""

import socket
import time

import numpy as np
import pytest

from serving import client as client_lib
from limaml_keras import serving_requests as requests_lib

MODEL = "limaml"


def _grpc(server, model=MODEL, **kwargs):
  return client_lib.GrpcClient(f"127.0.0.1:{server.grpc_port}", model, **kwargs)


def _rest(server, model=MODEL, **kwargs):
  return client_lib.RestClient(f"http://127.0.0.1:{server.rest_port}", model, **kwargs)


@pytest.fixture(params=["grpc", "rest"])
def client(request, server):
  with (_grpc if request.param == "grpc" else _rest)(server) as opened:
    yield opened


def _examples(tiny_catalog, member_id):
  member, _ = tiny_catalog.member(member_id)
  return requests_lib.serialized_examples(member, tiny_catalog.items(["x", "y"]),
                                          tiny_catalog.feature_spec)


def test_grpc_rest_rows_and_columns_agree(server, tiny_catalog):
  examples = _examples(tiny_catalog, "7") + _examples(tiny_catalog, "9")
  with _grpc(server) as grpc_client, _rest(server) as rest_client:
    by_grpc = grpc_client.predict(examples)
    rows = rest_client.predict(examples)
    columns = rest_client.predict(examples, columnar=True)
  assert set(by_grpc) == set(rows) == set(columns) == {"probabilities", "logits",
                                                       "personalised"}
  assert by_grpc["personalised"].tolist() == [True, True, False, False]
  for other in (rows, columns):
    np.testing.assert_allclose(other["probabilities"], by_grpc["probabilities"], rtol=1e-6)
    assert other["personalised"].tolist() == by_grpc["personalised"].tolist()


def test_metadata_and_status(client):
  metadata = client.model_metadata()
  assert metadata["model_spec"]["name"] == MODEL
  assert int(metadata["model_spec"]["version"]) == 1
  serving = metadata["signature_def"]["serving_default"]
  assert serving["inputs"] == {"examples": {"dtype": "DT_STRING", "shape": [-1]}}
  assert set(serving["outputs"]) == {"probabilities", "logits", "personalised"}
  status = client.model_status()
  assert status == [{"version": 1, "state": "AVAILABLE", "error_code": "OK",
                     "error_message": ""}]


def test_rank_returns_the_top_k_and_whether_personalised(client, tiny_catalog):
  member, _ = tiny_catalog.member("8")
  items = tiny_catalog.items(["x", "y"])
  ranking = client_lib.rank(client, tiny_catalog.feature_spec, member, items, k=1)
  full = client_lib.rank(client, tiny_catalog.feature_spec, member, items, k=5)
  assert ranking.member_id == "8" and ranking.personalised is True
  assert len(full.items) == 2 and ranking.items == full.items[:1]
  assert full.items[0][1] >= full.items[1][1]
  unknown, _ = tiny_catalog.member("42")
  cold = client_lib.rank(client, tiny_catalog.feature_spec, unknown, items, k=2)
  assert cold.personalised is False
  assert "cold start" in client_lib.format_ranking(cold, cold_start=True)


def test_rank_on_a_model_without_member_table(server, tiny_catalog):
  member, _ = tiny_catalog.member("7")
  with _grpc(server, model="global") as client:
    ranking = client_lib.rank(client, tiny_catalog.feature_spec, member,
                              tiny_catalog.items(["x", "y"]), k=2)
  assert ranking.personalised is None and len(ranking.items) == 2


def test_rank_refuses_bad_arguments(client, tiny_catalog):
  member, _ = tiny_catalog.member("7")
  spec = tiny_catalog.feature_spec
  with pytest.raises(ValueError, match="k must be a positive integer"):
    client_lib.rank(client, spec, member, tiny_catalog.items(["x"]), k=0)
  with pytest.raises(ValueError, match=r"more than once: \['x'\]"):
    client_lib.rank(client, spec, member, tiny_catalog.items(["x", "x"]), k=1)


@pytest.mark.parametrize("make", [_grpc, _rest])
def test_server_errors_carry_code_and_message(make, server, tiny_catalog):
  examples = _examples(tiny_catalog, "7")
  with make(server, version=99) as pinned:
    with pytest.raises(client_lib.ServingError) as missing:
      pinned.predict(examples)
  assert missing.value.code == "NOT_FOUND" and "99" in missing.value.message
  with make(server, version=1) as pinned:
    assert pinned.predict(examples)["probabilities"].shape == (2,)
  with make(server) as plain:
    with pytest.raises(client_lib.ServingError) as bad:
      plain.predict(examples, signature_name="nope")
    assert bad.value.code in ("INVALID_ARGUMENT", "NOT_FOUND") and "nope" in bad.value.message
    with pytest.raises(client_lib.ServingError) as garbage:
      plain.predict([b"not a tf.Example"])
    assert garbage.value.code == "INVALID_ARGUMENT"


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_unreachable_servers_are_unavailable():
  port = _free_port()
  with client_lib.GrpcClient(f"127.0.0.1:{port}", timeout_s=2.0) as grpc_client:
    with pytest.raises(client_lib.ServingError, match="UNAVAILABLE: cannot reach"):
      grpc_client.model_status()
  with client_lib.RestClient(f"http://127.0.0.1:{port}", timeout_s=2.0) as rest_client:
    with pytest.raises(client_lib.ServingError, match="UNAVAILABLE: cannot reach"):
      rest_client.model_status()


@pytest.mark.parametrize("kind", ["grpc", "rest"])
def test_timeouts_are_enforced(kind):
  with socket.socket() as stalled:  # Accepts connections, never answers.
    stalled.bind(("127.0.0.1", 0))
    stalled.listen()
    port = stalled.getsockname()[1]
    if kind == "grpc":
      client = client_lib.GrpcClient(f"127.0.0.1:{port}", timeout_s=0.5)
    else:
      client = client_lib.RestClient(f"http://127.0.0.1:{port}", timeout_s=0.5)
    started = time.monotonic()
    with client, pytest.raises(client_lib.ServingError) as error:
      client.predict([b""])
    assert error.value.code == "DEADLINE_EXCEEDED"
    assert time.monotonic() - started < 3.0


def test_bad_client_settings():
  with pytest.raises(ValueError, match="host:port"):
    client_lib.GrpcClient("localhost")
  with pytest.raises(ValueError, match="http://"):
    client_lib.RestClient("localhost:8501")
  with pytest.raises(ValueError, match="timeout_s must be positive"):
    client_lib.GrpcClient(timeout_s=0)
  with pytest.raises(ValueError, match="not both"):
    client_lib.RestClient(version=1, version_label="stable")
