"""Security settings of the demo node that need no server: DEBUG only on loopback, the clock-skew
bound on client dates, and what marks a content type as active."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from spread_api.protection import is_active
from spread_core.clock import MICROSECONDS, check_client_date, now_us
from spread_core.exceptions import DateTooFarAhead
from spread_core.management.commands.spread_node import is_loopback


@pytest.mark.parametrize("bind", ["0.0.0.0:8123", "192.168.1.5:8123", "[::]:8123", "example.org:8123"])
def test_spread_node_refuses_debug_on_a_non_loopback_bind(bind: str) -> None:
    with override_settings(DEBUG=True), pytest.raises(CommandError, match="DEBUG"):
        call_command("spread_node", "--bind", bind, "--no-migrate")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.3.2.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("::", False),
        ("node.example", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_client_dates_are_bounded_by_max_future_skew() -> None:
    now = now_us()
    assert check_client_date(now + 250 * MICROSECONDS) == now + 250 * MICROSECONDS
    assert check_client_date(0) == 0  # the past is always allowed: it just loses
    with pytest.raises(DateTooFarAhead):
        check_client_date(now + 301 * MICROSECONDS)
    with override_settings(SPREAD={"MAX_FUTURE_SKEW": 1.0}), pytest.raises(DateTooFarAhead):
        check_client_date(now + 5 * MICROSECONDS)
    with override_settings(SPREAD={"MAX_FUTURE_SKEW": None}):
        assert check_client_date(2**62) == 2**62


@pytest.mark.parametrize(
    ("content_type", "active"),
    [
        ("text/html", True),
        ("TEXT/HTML; charset=utf-8", True),
        ("image/svg+xml", True),
        ("application/atom+xml", True),
        ("application/pdf", True),
        ("text/plain", False),
        ("application/json", False),
        ("application/octet-stream", False),
        ("image/png", False),
        ("", False),
    ],
)
def test_active_content_types(content_type: str, active: bool) -> None:
    assert is_active(content_type) is active
