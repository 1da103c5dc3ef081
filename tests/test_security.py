"""Security promises that need no server process: DEBUG only on loopback, the clock-skew bound on
client dates, what marks a content type as active, and the admin's access control (staff only,
a permission each for rollback, playback and pruning, CSRF, no framing)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.urls import reverse

from spread_api.protection import is_active
from spread_core import api
from spread_core.clock import MICROSECONDS, check_client_date, now_us
from spread_core.exceptions import DateTooFarAhead
from spread_core.iteration import current_iteration
from spread_core.management.commands.spread_node import is_loopback

from .blob_stores import spread_with


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
    with override_settings(SPREAD=spread_with(MAX_FUTURE_SKEW=1.0)), pytest.raises(DateTooFarAhead):
        check_client_date(now + 5 * MICROSECONDS)
    with override_settings(SPREAD=spread_with(MAX_FUTURE_SKEW=None)):
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


# --- the admin: staff only, its own permissions for rollback, playback and pruning, CSRF, framing --


def _user(username: str, *, staff: bool, permissions: tuple[str, ...] = ()) -> Client:
    user = get_user_model().objects.create_user(username, password="pw", is_staff=staff)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client = Client()
    client.force_login(user)
    return client


def _history_url(name: str) -> str:
    return reverse(f"admin:spread_history_topichistory_{name}")


@pytest.mark.django_db
def test_the_admin_is_for_staff_only() -> None:
    api.post("sec/a", b"v1")
    visitor = _user("visitor", staff=False, permissions=("view_topichistory", "rollback_topic"))
    for name in ("changelist", "rollback", "replay", "retention", "travel"):
        response = visitor.get(_history_url(name))
        assert response.status_code == 302 and "/admin/login/" in response["Location"], name
    assert (
        visitor.post(_history_url("rollback"), {"prefix": "sec", "to": "0", "confirm": "1"}).status_code
        == 302
    )
    assert api.get("sec/a").value == b"v1"  # type: ignore[union-attr]


@pytest.mark.django_db
def test_rollback_playback_and_pruning_each_need_their_own_permission() -> None:
    api.post("sec/b", b"v1")
    point = current_iteration()
    api.post("sec/b", b"v2")
    viewer = _user("viewer", staff=True, permissions=("view_topichistory",))
    assert viewer.get(_history_url("changelist")).status_code == 200
    denied = {
        "rollback": {"prefix": "sec", "to": str(point), "confirm": "1"},
        "replay": {"prefix": "sec", "start": "0", "end": str(point + 1), "into": "copy", "speed": "0"},
        "retention": {"confirm": "1"},
    }
    for name, form in denied.items():
        assert viewer.get(_history_url(name), form).status_code == 403, name
        assert viewer.post(_history_url(name), form).status_code == 403, name
    assert api.get("sec/b").value == b"v2"  # type: ignore[union-attr]
    assert api.get("copy/b") is None
    allowed = _user("roller", staff=True, permissions=("view_topichistory", "rollback_topic"))
    assert allowed.post(_history_url("rollback"), denied["rollback"]).status_code == 302
    assert api.get("sec/b").value == b"v1"  # type: ignore[union-attr]


@pytest.mark.django_db
def test_admin_posts_need_a_csrf_token_and_admin_pages_cannot_be_framed() -> None:
    api.post("sec/c", b"v1")
    point = current_iteration()
    api.post("sec/c", b"v2")
    user = get_user_model().objects.create_superuser("root", password="pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(_history_url("changelist"))
    assert page.status_code == 200 and page["X-Frame-Options"] == "DENY"
    forged = client.post(_history_url("rollback"), {"prefix": "sec", "to": str(point), "confirm": "1"})
    assert forged.status_code == 403 and b"CSRF" in forged.content
    assert api.get("sec/c").value == b"v2"  # type: ignore[union-attr]
