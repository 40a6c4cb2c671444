"""The end of the main job: serve the pushed model and print top-k answers.

`show_top_k` starts the dev server (`serving.dev_server`) on free ports over
the Pusher's model base path, asks it over gRPC for the top k of the most
popular items for a few members, prints one small table per member (saying
which members are cold start: not in the data, scored with the un-adapted
Meta Block) and stops the server. It is what a team would do against the
stock `tensorflow/serving` image with `limaml serve predict`.

Example:

```python
show_top_k("outputs/pipeline/serving_model", "outputs/pipeline/input/interactions.csv")
```
"""

from typing import Callable, List, Optional, Sequence

from limaml_keras import catalog as catalog_lib
from serving import client as client_lib
from serving import dev_server

#: Candidate items per member: the most popular ones of the data.
NUM_CANDIDATES = 100


def default_members(catalog: catalog_lib.Catalog, num_warm: int = 2) -> List[str]:
  """The `num_warm` most active members and one member id not in the data (cold start)."""
  return catalog.active_members(num_warm) + [catalog.unknown_member_id()]


def show_top_k(model_base_path: str, data_csv: str, members: Optional[Sequence[str]] = None,
               k: int = 5, model_name: str = client_lib.DEFAULT_MODEL_NAME,
               spec_path: Optional[str] = None,
               report: Callable[[str], None] = print) -> List[client_lib.Ranking]:
  """Serves `model_base_path` on free ports and reports the top `k` items of each member.

  Args:
    model_base_path: the Pusher's directory of `<version>/` SavedModels.
    data_csv: the raw interactions CSV the model was trained on (with
      `features.json` beside it, or `spec_path`).
    members: member ids (default: `default_members`).
    k: items per member.
    model_name: the name the model is served under.
    spec_path: the feature spec, when not beside the CSV.
    report: receives each printed block.

  Returns:
    The rankings, in `members` order.

  Raises:
    ValueError: when the base path holds no servable version.
    ServingError: when the server fails a request.
  """
  catalog = catalog_lib.load_catalog(data_csv, spec_path)
  members = list(members) if members is not None else default_members(catalog)
  items = catalog.items(catalog.popular_items(NUM_CANDIDATES))
  rankings = []
  with dev_server.DevServer(model_base_path, model_name=model_name, grpc_port=0,
                            rest_port=0) as server:
    with client_lib.GrpcClient(f"127.0.0.1:{server.grpc_port}", model_name,
                               timeout_s=30.0) as client:
      try:
        statuses = client.model_status()
      except client_lib.ServingError as e:
        if e.code != "NOT_FOUND":
          raise
        statuses = []
      available = [s["version"] for s in statuses if s["state"] == "AVAILABLE"]
      if not available:
        raise ValueError(f"no servable version in {model_base_path} (expected "
                         "<version>/saved_model.pb directories)")
      report(f"serving {model_name!r} version {max(available)} from {model_base_path} "
             f"(gRPC 127.0.0.1:{server.grpc_port}, REST http://127.0.0.1:{server.rest_port}); "
             f"top {k} of the {len(items)} most popular items:")
      for member_id in members:
        member, known = catalog.member(member_id)
        ranking = client_lib.rank(client, catalog.feature_spec, member, items, k)
        report(client_lib.format_ranking(ranking, cold_start=not known))
        rankings.append(ranking)
  return rankings
