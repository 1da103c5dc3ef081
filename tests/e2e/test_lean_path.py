"""The lean path of the raw API (spread_api.lean) against the plain DRF path, on real nodes: the
same answers byte for byte, header for header; reads coherent across node processes that share a
database; cached tokens refused once they expire; the lean path off where it would skip rules."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.test.utils import override_settings

from spread_api.lean import lean_path_applies
from spread_api.tokens import device_token
from spread_core.testing import LiveNode
from tests.blob_stores import spread_with

pytestmark = pytest.mark.e2e

DATE = 1_764_130_000_000_000
IGNORED_HEADERS = {"date"}


@pytest.fixture(scope="module")
def lean_and_plain(module_nodes: Callable[..., LiveNode]) -> dict[str, LiveNode]:
    return {
        "lean": module_nodes("lean-node", SPREAD_TEST_LEAN_PATH="1"),
        "plain": module_nodes("plain-node", SPREAD_TEST_LEAN_PATH="0"),
    }


def cases(token: str, read_only: str) -> list[tuple[str, str, dict[str, Any]]]:
    auth = {"Authorization": f"Bearer {token}"}
    return [
        ("POST", "/raw/same/text", {"content": b"hello", "headers": {**auth, "X-Spread-Etag": str(DATE)}}),
        ("GET", "/raw/same/text", {}),
        ("HEAD", "/raw/same/text", {}),
        ("GET", "/raw/same/text", {"headers": {"If-None-Match": "*"}}),
        ("GET", "/raw/same/text?authorization=Bearer%20" + token, {}),
        ("GET", "/raw/same/missing", {}),
        ("HEAD", "/raw/same/missing", {}),
        ("POST", "/raw/same/anonymous", {"content": b"x"}),
        ("POST", "/raw/same/bad-token", {"content": b"x", "headers": {"Authorization": "Bearer bad"}}),
        ("POST", "/raw/same/basic", {"content": b"x", "headers": {"Authorization": "Basic eDp5"}}),
        ("POST", "/raw/same/two-words", {"content": b"x", "headers": {"Authorization": "Bearer a b"}}),
        (
            "POST",
            "/raw/same/forbidden",
            {"content": b"x", "headers": {"Authorization": f"Bearer {read_only}"}},
        ),
        (
            "POST",
            "/raw/same/text",
            {"content": b"x", "headers": {**auth, "If-None-Match": "*", "X-Spread-Etag": str(DATE + 1)}},
        ),
        (
            "POST",
            "/raw/same/page",
            {"content": b"<b>", "headers": {**auth, "Content-Type": "text/html", "X-Spread-Etag": str(DATE)}},
        ),
        ("GET", "/raw/same/page", {}),
        ("DELETE", "/raw/same/page", {"headers": {**auth, "X-Spread-Etag": str(DATE + 9)}}),
        ("GET", "/raw/same/page", {}),
        ("GET", "/raw/same/%ZZ", {}),
        ("POST", "/raw/same/empty", {"content": b"", "headers": auth}),
        ("POST", "/raw/same/bad-date", {"content": b"x", "headers": {**auth, "X-Spread-Etag": "soon"}}),
        ("POST", "/raw/same/bad-type", {"content": b"x", "headers": {**auth, "Content-Type": "a" * 300}}),
        ("GET", "/raw/same/text?at=1", {}),
        (
            "POST",
            "/raw/same/utf8",
            {
                "content": "é".encode(),
                "headers": {**auth, "Content-Type": "text/plain; charset=utf-8", "X-Spread-Etag": str(DATE)},
            },
        ),
        ("GET", "/raw/same/utf8", {}),
        (
            "POST",
            "/raw/same/blob",
            {"content": b"b" * 10_000, "headers": {**auth, "X-Spread-Etag": str(DATE)}},
        ),
        ("GET", "/raw/same/blob", {}),
        ("HEAD", "/raw/same/blob", {}),
        ("GET", "/raw/same/blob", {"headers": {"Range": "bytes=100-199"}}),
        ("OPTIONS", "/raw/same/text", {}),
    ]


def test_the_lean_path_answers_exactly_as_the_plain_path(lean_and_plain: dict[str, LiveNode]) -> None:
    token = str(device_token("dev-same"))
    read_only = str(device_token("dev-read-only", write=["elsewhere"]))
    for method, target, options in cases(token, read_only):
        answers = {}
        for name, node in lean_and_plain.items():
            response = httpx.request(method, node.url + target, timeout=30, **options)
            headers = {k: v for k, v in response.headers.items() if k not in IGNORED_HEADERS}
            answers[name] = (response.status_code, headers, response.content)
        assert answers["lean"] == answers["plain"], (method, target)


def test_a_read_served_by_another_process_of_the_node_sees_every_acknowledged_write(
    make_node: Callable[..., LiveNode], token: str
) -> None:
    first = make_node("process-a")
    second = LiveNode(first.manage_py, {**first.env, "SPREAD_NODE_NAME": "process-a"})
    second.start()
    try:
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(timeout=30) as client:
            for i in range(40):
                writer, reader = (first, second) if i % 2 else (second, first)
                assert client.get(f"{reader.url}/raw/shared/value").status_code in (200, 404)  # cached
                written = client.post(
                    f"{writer.url}/raw/shared/value", content=f"v{i}".encode(), headers=auth
                )
                assert written.status_code == 200, written.text
                read = client.get(f"{reader.url}/raw/shared/value")
                assert read.content == f"v{i}".encode(), (i, read.status_code)
            assert client.delete(f"{first.url}/raw/shared/value", headers=auth).status_code == 200
            assert client.get(f"{second.url}/raw/shared/value").status_code == 404
    finally:
        second.stop()


def test_a_cached_token_is_refused_once_it_expires(lean_and_plain: dict[str, LiveNode]) -> None:
    token = device_token("dev-short")
    token.set_exp(lifetime=timedelta(seconds=2))
    auth = {"Authorization": f"Bearer {token}"}
    url = lean_and_plain["lean"].url + "/raw/expiring/value"
    assert httpx.post(url, content=b"in time", headers=auth).status_code == 200
    time.sleep(2.5)
    late = httpx.post(url, content=b"too late", headers=auth)
    assert late.status_code == 401
    assert late.json()["error"] == "token_not_valid"
    assert httpx.get(url).content == b"in time"


def test_the_lean_path_is_off_where_it_would_skip_a_rule_of_the_site() -> None:
    assert lean_path_applies()
    with override_settings(SPREAD=spread_with(LEAN_PATH=False)):
        assert not lean_path_applies()
    with override_settings(MIDDLEWARE=["example.middleware.Audit"]):
        assert not lean_path_applies()
    with override_settings(SECURE_SSL_REDIRECT=True):
        assert not lean_path_applies()
    with override_settings(SECURE_HSTS_SECONDS=3600):
        assert not lean_path_applies()
