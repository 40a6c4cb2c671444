"""Tests for serving.limits: defaults written once, bad values refused."""
import pytest

from serving import limits


def test_defaults_are_the_module_constants():
  server_limits = limits.ServerLimits()
  assert server_limits.max_request_bytes == limits.MAX_REQUEST_BYTES
  assert server_limits.rest_api_timeout_s == limits.REST_API_TIMEOUT_S
  assert server_limits.settle_interval_s == limits.SETTLE_INTERVAL_S
  assert limits.MAX_FILL_BYTES < limits.MAX_REQUEST_BYTES


@pytest.mark.parametrize("kwargs,message", [
    ({"max_request_bytes": 0}, "max_request_bytes must be a positive integer"),
    ({"max_request_bytes": 1 << 31}, "below 2 GiB"),
    ({"grpc_max_threads": 1.5}, "grpc_max_threads must be a positive integer"),
    ({"rest_api_num_threads": True}, "rest_api_num_threads"),
    ({"rest_api_timeout_s": 0}, "rest_api_timeout_s must be positive"),
    ({"settle_interval_s": float("nan")}, "settle_interval_s must be >= 0"),
])
def test_bad_limits_are_refused(kwargs, message):
  with pytest.raises(ValueError, match=message):
    limits.ServerLimits(**kwargs)
