"""The lean path's memoised parts (spread_api.lean): answer headers kept per cached event, the raw
prefix, host verdicts and settings checks are recomputed when a setting changes and never outlive
the event they describe. In-process, through the ASGI middleware itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from django.http.response import ResponseHeaders
from django.test.utils import override_settings

from spread_api.lean import LeanRawMiddleware
from spread_api.tokens import device_token
from spread_core import api
from spread_core.cache import value_cache
from spread_core.conf import per_settings
from spread_core.exceptions import InvalidPath
from spread_core.paths import TopicPath, parse_canonical, parse_url_path

from .blob_stores import spread_with

pytestmark = pytest.mark.django_db(transaction=True)

FELL_THROUGH = 599  # what the wrapped application answers: the request went on to the full stack


async def full_stack(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": FELL_THROUGH, "headers": []})
    await send({"type": "http.response.body", "body": b""})


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    value_cache.clear()
    yield
    value_cache.clear()


def get(path: str, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """GET ``/raw/<path>`` through a new LeanRawMiddleware; (status, headers, body)."""
    token = str(device_token("lean-test"))
    scope = {
        "type": "http",
        "method": "GET",
        "path": f"/raw/{path}",
        "raw_path": f"/raw/{path}".encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host.encode()), (b"authorization", f"Bearer {token}".encode())],
    }
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    asyncio.run(LeanRawMiddleware(full_stack)(scope, receive, send))
    start, body = messages
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in start["headers"]}
    return start["status"], headers, body["body"]


def test_answer_headers_of_a_cached_event_follow_a_settings_change() -> None:
    api.post("lean/cors", "v", content_type="text/plain")
    status, headers, _ = get("lean/cors")
    assert status == 200 and headers["Access-Control-Allow-Origin"] == "*"
    with override_settings(SPREAD=spread_with(CORS_ORIGIN="https://app.example")):
        status, headers, _ = get("lean/cors")  # the same cached event object
        assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    with override_settings(X_FRAME_OPTIONS="SAMEORIGIN"):
        assert get("lean/cors")[1]["X-Frame-Options"] == "SAMEORIGIN"
    assert get("lean/cors")[1]["X-Frame-Options"] == "DENY"
    assert value_cache.stats()["hits"] >= 3


def test_a_new_value_gets_its_own_headers() -> None:
    first = api.post("lean/new", "one", content_type="text/plain")
    _, headers, body = get("lean/new")
    assert (headers["ETag"], headers["Content-Length"], body) == (f'"{first["id"]}"', "3", b"one")
    second = api.post("lean/new", "three", content_type="application/json")
    _, headers, body = get("lean/new")
    assert (headers["ETag"], headers["Content-Length"], body) == (f'"{second["id"]}"', "5", b"three")
    assert headers["Content-Type"] == "application/json"


def test_a_non_latin1_origin_is_encoded_as_django_encodes_it() -> None:
    api.post("lean/origin", "v", origin="čidlo-3")
    _, headers, _ = get("lean/origin")
    assert headers["From"] == ResponseHeaders({"From": "čidlo-3"})["From"]


def test_host_verdicts_are_forgotten_when_allowed_hosts_change() -> None:
    api.post("lean/host", "v")
    with override_settings(ALLOWED_HOSTS=["127.0.0.1"]):
        assert get("lean/host", host="other.example")[0] == FELL_THROUGH  # Django answers it (400)
        assert get("lean/host", host="127.0.0.1")[0] == 200
    with override_settings(ALLOWED_HOSTS=["other.example"]):
        assert get("lean/host", host="other.example")[0] == 200
        assert get("lean/host", host="127.0.0.1")[0] == FELL_THROUGH


def test_the_lean_path_switch_is_read_again_when_settings_change() -> None:
    api.post("lean/switch", "v")
    assert get("lean/switch")[0] == 200
    with override_settings(SPREAD=spread_with(LEAN_PATH=False)):
        assert get("lean/switch")[0] == FELL_THROUGH
    with override_settings(MIDDLEWARE=["tests.test_lean_answers.SomeOtherMiddleware"]):
        assert get("lean/switch")[0] == FELL_THROUGH
    assert get("lean/switch")[0] == 200


class SomeOtherMiddleware:  # a site's own middleware, whose rules the lean path would skip
    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response


def test_per_settings_forgets_its_value_when_any_setting_changes() -> None:
    calls: list[int] = []

    @per_settings
    def computed() -> int:
        calls.append(1)
        return len(calls)

    assert computed() == computed() == 1
    with override_settings(USE_TZ=True):
        assert computed() == 2
    assert computed() == 3 and len(calls) == 3


@pytest.mark.parametrize("raw", [b"a/b", b"%C3%A9t%C3%A9/x%20y", b"a%2Fb/c", b"", b"x" * 255])
def test_parse_url_path_is_from_url(raw: bytes) -> None:
    assert parse_url_path(raw) == TopicPath.from_url(raw)
    assert parse_url_path(raw).canonical == TopicPath.from_url(raw).canonical


@pytest.mark.parametrize("text", ["a/b", "été/x y", "a%2Fb/c", "", "x" * 255])
def test_parse_canonical_is_from_canonical(text: str) -> None:
    assert parse_canonical(text) == TopicPath.from_canonical(text) == TopicPath.coerce(text)
    assert parse_canonical(text).canonical == TopicPath.from_canonical(text).canonical


@pytest.mark.parametrize("raw", [b"a//b", b"a/../b", b"%zz", b"x" * 256, b"a/%00"])
def test_a_bad_path_is_refused_every_time_it_comes(raw: bytes) -> None:
    for _ in range(2):  # refusals are not remembered as paths
        with pytest.raises(InvalidPath):
            parse_url_path(raw)
        with pytest.raises(InvalidPath):
            parse_canonical(raw.decode("latin-1"))
