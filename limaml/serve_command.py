"""`limaml serve start|predict|status|metadata`: run and query the serving model.

    limaml serve start --model-base-path DIR          the dev server (gRPC 8500, REST 8501)
    limaml serve predict --member ID [--items ID,ID]  top-k items for a member
    limaml serve status                               the state of each model version
    limaml serve metadata                             the model's signatures

`predict`, `status` and `metadata` talk to any TF Serving model server (the
stock `tensorflow/serving` image of `serving/docker-compose.yml`, or `serve
start`) over gRPC (`--server host:port`, the default `localhost:8500`) or
REST (`--rest http://host:port`). `predict` reads the member's and the items'
raw features from the interactions CSV the model was trained on (`--data`,
with `features.json` beside it); a member not in it is scored on the
cold-start path, an unknown item is an error. Without `--items` it ranks the
100 most popular items.
"""

import argparse
import json
import os
import signal
import sys

from limaml import cli
from serving import limits

_DEFAULT_DATA = os.path.join("outputs", "pipeline", "input", "interactions.csv")
_DEFAULT_CANDIDATES = 100
_LIMIT_FLAGS = {"max_request_bytes": "--max-request-bytes", "grpc_max_threads": "--grpc-max-threads",
                "rest_api_num_threads": "--rest-api-num-threads",
                "rest_api_timeout_s": "--rest-api-timeout",
                "settle_interval_s": "--settle-interval"}


def _add_connection_arguments(parser: argparse.ArgumentParser) -> None:
  # Defaults (None here) are `serving.client`'s, resolved when the command runs.
  where = parser.add_mutually_exclusive_group()
  where.add_argument("--server", metavar="HOST:PORT",
                     help="gRPC address of the model server (default: localhost:8500)")
  where.add_argument("--rest", metavar="URL", help="REST base URL instead of gRPC, for "
                     "example http://localhost:8501")
  parser.add_argument("--model-name", help="model name in the server's config "
                      "(default: limaml)")
  parser.add_argument("--version", type=int, help="a specific model version (default: latest)")
  parser.add_argument("--timeout", type=float,
                      help="deadline of each call in seconds (default: 5)")


def register(subparsers) -> None:
  """Adds the `serve` command (start, predict, status, metadata) to the `limaml` CLI."""
  commands = cli.add_command_group(
      subparsers, "serve", "serve the pushed model and query it (gRPC / REST)", __doc__)

  start = commands.add_parser("start", help="run the dev server on a model base path until "
                              "Ctrl-C")
  start.add_argument("--model-base-path", required=True,
                     help="directory of <version>/ SavedModels (the Pusher's serving_model_dir)")
  start.add_argument("--model-name", default="limaml",
                     help="name the model is served under (default: %(default)s)")
  start.add_argument("--host", default="127.0.0.1",
                     help="interface to bind, 0.0.0.0 for all (default: %(default)s)")
  start.add_argument("--grpc-port", type=int, default=8500,
                     help="gRPC port, 0 = any free port (default: %(default)s)")
  start.add_argument("--rest-port", type=int, default=8501,
                     help="REST port, 0 = any free port (default: %(default)s)")
  start.add_argument("--poll-interval", type=float, default=30.0,
                     help="seconds between scans of the base path for new versions "
                     "(default: %(default)s)")
  start.add_argument("--max-request-bytes", type=int, default=limits.MAX_REQUEST_BYTES,
                     help="largest request, gRPC message or REST body (default: %(default)s)")
  start.add_argument("--grpc-max-threads", type=int, default=limits.GRPC_MAX_THREADS,
                     help="gRPC worker threads (default: %(default)s)")
  start.add_argument("--rest-api-num-threads", type=int, default=limits.REST_API_NUM_THREADS,
                     help="concurrent REST connections (default: %(default)s)")
  start.add_argument("--rest-api-timeout", type=float, default=limits.REST_API_TIMEOUT_S,
                     help="seconds a REST client has to send a request (default: %(default)s)")
  start.add_argument("--settle-interval", type=float, default=limits.SETTLE_INTERVAL_S,
                     help="seconds a new version's files must stay unchanged before it "
                     "loads (default: %(default)s)")
  start.set_defaults(func=_start)

  predict = commands.add_parser("predict", help="top-k items for a member")
  predict.add_argument("--member", required=True,
                       help="the member id (surrounding spaces are stripped, as in the CSVs)")
  predict.add_argument("--items", help="comma-separated candidate item ids (default: the "
                       f"{_DEFAULT_CANDIDATES} most popular items of --data)")
  predict.add_argument("--data", default=_DEFAULT_DATA,
                       help="raw interactions CSV with the members' and items' features "
                       "(default: %(default)s, what `limaml pipeline run` generates)")
  predict.add_argument("--spec", help="feature spec JSON (default: features.json beside --data)")
  predict.add_argument("--k", type=int, default=10, help="how many items (default: %(default)s)")
  predict.add_argument("--json", action="store_true", help="print JSON instead of a table")
  _add_connection_arguments(predict)
  predict.set_defaults(func=_predict)

  status = commands.add_parser("status", help="the state of each model version")
  _add_connection_arguments(status)
  status.set_defaults(func=_status)

  metadata = commands.add_parser("metadata", help="the model's signatures (JSON)")
  _add_connection_arguments(metadata)
  metadata.set_defaults(func=_metadata)


def _usage_error(message: str):
  from limaml import cli  # pylint: disable=g-import-not-at-top
  return cli.UsageError(message)


def _check_port(name: str, port: int) -> None:
  if not 0 <= port <= 65535:
    raise _usage_error(f"{name} must be a port number 0-65535, got {port}")


def _client(args):
  """The client the connection flags ask for."""
  from serving import client  # pylint: disable=g-import-not-at-top
  timeout = client.DEFAULT_TIMEOUT_S if args.timeout is None else args.timeout
  if timeout <= 0:
    raise _usage_error(f"--timeout must be positive, got {timeout}")
  model_name = args.model_name or client.DEFAULT_MODEL_NAME
  try:
    if args.rest:
      return client.RestClient(args.rest, model_name, timeout, version=args.version)
    return client.GrpcClient(args.server or client.DEFAULT_GRPC_TARGET, model_name, timeout,
                             version=args.version)
  except ValueError as e:
    raise _usage_error(str(e)) from None


def _serving_errors(function):
  """Runs `function(args)`; a `ServingError` becomes one line on stderr and exit code 1."""

  def run(args):
    from serving import client  # pylint: disable=g-import-not-at-top
    try:
      return function(args)
    except client.ServingError as e:
      print(f"limaml serve {args.serve_command}: error: {e}", file=sys.stderr)
      return 1

  return run


def _raise_keyboard_interrupt(signum, frame):  # pylint: disable=unused-argument
  raise KeyboardInterrupt


def _start(args) -> int:
  """`limaml serve start`."""
  from serving import dev_server  # pylint: disable=g-import-not-at-top
  _check_port("--grpc-port", args.grpc_port)
  _check_port("--rest-port", args.rest_port)
  if args.poll_interval <= 0:
    raise _usage_error(f"--poll-interval must be positive, got {args.poll_interval}")
  if not os.path.isdir(args.model_base_path):
    raise FileNotFoundError(f"no such model base path: {args.model_base_path}")
  try:
    server_limits = limits.ServerLimits(
        args.max_request_bytes, args.grpc_max_threads, args.rest_api_num_threads,
        args.rest_api_timeout, args.settle_interval)
  except ValueError as e:
    message = str(e)
    for field, flag in _LIMIT_FLAGS.items():
      message = message.replace(field, flag)
    raise _usage_error(message) from None
  server = dev_server.DevServer(args.model_base_path, model_name=args.model_name,
                                host=args.host, grpc_port=args.grpc_port, rest_port=args.rest_port,
                                poll_interval_s=args.poll_interval, limits=server_limits)
  # Ctrl-C and SIGTERM (how Kubernetes and docker stop a server) stop it, also in a
  # process started with SIGINT ignored (a background job of a non-interactive
  # shell, some test runners), where Python installs no Ctrl-C handler.
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, _raise_keyboard_interrupt)

  def print_ports():
    print(f"serving {args.model_name!r} from {os.path.abspath(args.model_base_path)}: gRPC "
          f"{server.host}:{server.grpc_port}, REST http://{server.host}:{server.rest_port} "
          "(Ctrl-C stops)", flush=True)

  try:
    server.serve_until_interrupted(on_serving=print_ports)
  except OSError as e:
    print(f"limaml serve start: error: {e}", file=sys.stderr)
    return 1
  return 0


@_serving_errors
def _predict(args) -> int:
  """`limaml serve predict`."""
  # pylint: disable=g-import-not-at-top
  from limaml_keras import catalog as catalog_lib
  from limaml_keras import raw_data_checks
  from serving import client as client_lib
  # pylint: enable=g-import-not-at-top
  if args.k < 1:
    raise _usage_error(f"--k must be a positive integer, got {args.k}")
  try:
    member_id = raw_data_checks.clean_id(args.member, "--member")
  except ValueError as e:
    raise _usage_error(str(e)) from None
  if member_id != args.member:
    print(f"note: stripped surrounding spaces from --member {args.member!r}", file=sys.stderr)
  item_ids = None
  if args.items is not None:
    item_ids = [i.strip() for i in args.items.split(",") if i.strip()]
    if not item_ids:
      raise _usage_error("--items names no item")
  with _client(args) as client:
    catalog = catalog_lib.load_catalog(args.data, args.spec)
    member, known = catalog.member(member_id)
    items = catalog.items(item_ids or catalog.popular_items(_DEFAULT_CANDIDATES))
    ranking = client_lib.rank(client, catalog.feature_spec, member, items, args.k)
  if args.json:
    print(client_lib.ranking_json(ranking))
  else:
    print(client_lib.format_ranking(ranking, cold_start=not known))
  return 0


@_serving_errors
def _status(args) -> int:
  """`limaml serve status`."""
  with _client(args) as client:
    statuses = client.model_status()
  print(f"{'version':>12}  {'state':<12} error")
  for status in statuses:
    error = "" if status["error_code"] == "OK" else \
        f"{status['error_code']}: {status['error_message']}"
    print(f"{status['version']:>12}  {status['state']:<12} {error}".rstrip())
  return 0


@_serving_errors
def _metadata(args) -> int:
  """`limaml serve metadata`."""
  with _client(args) as client:
    print(json.dumps(client.model_metadata(), indent=2, sort_keys=True))
  return 0
