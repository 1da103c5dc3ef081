"""The raw HTTP API through a real node process (uvicorn, ASGI, the streaming upload middleware).

One node per module serves most tests (they use distinct topics); a second one with a small
``MAX_UPLOAD`` serves the 413 tests. Tests that check "nothing changed" compare the GET of a topic
before and after, and the iterations of two probe writes: iterations are dense, so a rejected
request that stored an event would leave a hole between them.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import httpx
import jwt
import pytest
import yaml

from spread_api.tokens import device_token
from spread_core.testing import LiveNode
from tests.node_settings_small import SMALL_MAX_UPLOAD
from tests.nodes import MANAGE_PY

pytestmark = pytest.mark.e2e

DATE = 1_764_130_000_000_000  # a fixed event date (µs), late 2025
INLINE_MAX = 4096
CHUNK_SIZE = 256 * 1024

# ----------------------------------------------------------------------------------------------
# Nodes shared by the module


#: Every test of the module runs against nodes answering through the lean path (spread_api.lean)
#: and against nodes answering through the plain DRF view (LEAN_PATH off).
REQUEST_PATHS = {"lean": "1", "plain": "0"}


@pytest.fixture(scope="module", params=sorted(REQUEST_PATHS))
def request_path(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def api_node(module_nodes: Callable[..., LiveNode], request_path: str) -> LiveNode:
    return module_nodes(f"raw-api-{request_path}", SPREAD_TEST_LEAN_PATH=REQUEST_PATHS[request_path])


@pytest.fixture(scope="module")
def small_node(module_nodes: Callable[..., LiveNode], request_path: str) -> LiveNode:
    return module_nodes(
        f"small-node-{request_path}",
        DJANGO_SETTINGS_MODULE="tests.node_settings_small",
        SPREAD_TEST_LEAN_PATH=REQUEST_PATHS[request_path],
    )


@pytest.fixture(scope="module")
def client(api_node: LiveNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_node.url, timeout=60.0) as http:
        yield http


@pytest.fixture(scope="module")
def small_client(small_node: LiveNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=small_node.url, timeout=60.0) as http:
        yield http


# ----------------------------------------------------------------------------------------------
# Helpers


def bearer(token: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def send_raw(client: httpx.Client, method: str, target: bytes, **kwargs: Any) -> httpx.Response:
    """Send ``target`` as the request target byte for byte (httpx would normalise dot segments
    and re-escape bad percent-encodings)."""
    request = client.build_request(method, "/", extensions={"target": target}, **kwargs)
    return client.send(request)


def assert_json_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.request.method, response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    if code is not None:
        assert body["error"] == code, body
    target = response.request.extensions.get("target", response.request.url.raw_path)
    if target.startswith(b"/raw/"):
        # A browser script may read the error of a cross-origin request.
        assert response.headers.get("access-control-allow-origin") == "*", response.headers
    return body


def probe_iteration(client: httpx.Client, auth: dict[str, str]) -> int:
    """The iteration of a new write; two probes around a block of requests show whether any
    request in between stored an event (iterations are dense)."""
    response = client.post("/raw/probe/iteration", content=uuid.uuid4().bytes, headers=auth)
    assert response.status_code == 200, response.text
    return int(response.json()["iteration"])


def snapshot(client: httpx.Client, path: str) -> tuple[int, bytes, dict[str, str | None]]:
    """What a reader sees at ``path``: status, body and the value headers."""
    response = client.get(f"/raw/{path}")
    names = ("content-type", "from", "x-spread-etag", "x-spread-iteration", "etag", "content-length")
    return response.status_code, response.content, {name: response.headers.get(name) for name in names}


def write(
    client: httpx.Client, path: str, body: bytes, auth: dict[str, str], **headers: str
) -> dict[str, Any]:
    response = client.post(f"/raw/{path}", content=body, headers={**auth, **headers})
    assert response.status_code == 200, response.text
    return response.json()


def propagation(*paths: str) -> list[dict[str, Any]]:
    return [{"path": path, "subscribers": 0} for path in paths]


# ----------------------------------------------------------------------------------------------
# Reads


def test_get_serves_value_with_content_type_origin_date_iteration_etag_and_length(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    report = write(
        client, "read/typed", b"hello, reader", auth, **{"Content-Type": "text/plain; charset=utf-8"}
    )
    typed = client.get("/raw/read/typed")
    assert typed.status_code == 200
    assert typed.content == b"hello, reader"
    assert typed.headers["content-type"] == "text/plain; charset=utf-8"
    assert typed.headers["from"] == "dev-test"
    assert re.fullmatch(r'"\d+"', typed.headers["x-spread-etag"])
    assert typed.headers["x-spread-iteration"] == str(report["iteration"])
    assert typed.headers["etag"] == f'"{report["id"]}"'
    assert typed.headers["content-length"] == str(len(b"hello, reader"))
    # A browser may read the value headers of a cross-origin response.
    assert typed.headers["access-control-allow-origin"] == "*"
    exposed = {name.strip().lower() for name in typed.headers["access-control-expose-headers"].split(",")}
    assert {"from", "x-spread-etag", "x-spread-iteration", "etag"} <= exposed

    write(client, "read/untyped", b"\x00\x01binary", auth)
    untyped = client.get("/raw/read/untyped")
    assert untyped.status_code == 200
    assert untyped.content == b"\x00\x01binary"
    assert untyped.headers["content-type"] == "application/octet-stream"


def test_get_of_a_chunked_blob_is_byte_identical_with_its_length_and_digest(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    value = os.urandom(2 * CHUNK_SIZE + 12345)
    report = write(client, "read/blob", value, auth)
    response = client.get("/raw/read/blob")
    assert response.status_code == 200
    assert response.content == value
    assert response.headers["content-length"] == str(len(value))
    assert response.headers["x-spread-sha256"] == hashlib.sha256(value).hexdigest()
    assert response.headers["etag"] == f'"{report["id"]}"'

    pieces = [value[i : i + 100_000] for i in range(0, len(value), 100_000)]
    streamed = client.post("/raw/read/blob-chunked", content=iter(pieces), headers=auth)
    assert streamed.request.headers["transfer-encoding"] == "chunked"
    assert streamed.status_code == 200, streamed.text
    read = client.get("/raw/read/blob-chunked")
    assert read.content == value
    assert read.headers["content-length"] == str(len(value))


def test_head_gives_the_get_headers_without_a_body(client: httpx.Client, auth: dict[str, str]) -> None:
    write(client, "read/head", b"head me", auth, **{"Content-Type": "application/x-custom"})
    get = client.get("/raw/read/head")
    head = client.head("/raw/read/head")
    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "from", "x-spread-etag", "x-spread-iteration", "etag", "content-length"):
        assert head.headers[name] == get.headers[name], name
    assert head.headers["content-length"] == str(len(b"head me"))


def test_if_none_match_with_the_current_etag_gives_304(client: httpx.Client, auth: dict[str, str]) -> None:
    report = write(client, "read/cached", b"v1", auth)
    etag = f'"{report["id"]}"'
    not_modified = client.get("/raw/read/cached", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    listed = client.get("/raw/read/cached", headers={"If-None-Match": f'"other", {etag}'})
    assert listed.status_code == 304
    assert client.head("/raw/read/cached", headers={"If-None-Match": etag}).status_code == 304

    other = client.get("/raw/read/cached", headers={"If-None-Match": '"some-older-id"'})
    assert other.status_code == 200
    assert other.content == b"v1"

    newer = write(client, "read/cached", b"v2", auth)
    changed = client.get("/raw/read/cached", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.content == b"v2"
    assert changed.headers["etag"] == f'"{newer["id"]}"'


def test_a_range_of_an_inline_value_is_206_with_its_content_range(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    report = write(client, "read/ranged", b"0123456789", auth, **{"Content-Type": "text/plain"})
    whole = client.get("/raw/read/ranged")
    assert whole.headers["accept-ranges"] == "bytes"
    assert client.head("/raw/read/ranged").headers["accept-ranges"] == "bytes"
    for header, body in [
        ("bytes=2-5", b"2345"),
        ("bytes=7-", b"789"),
        ("bytes=-3", b"789"),
        ("bytes=8-99", b"89"),
    ]:
        part = client.get("/raw/read/ranged", headers={"Range": header})
        assert part.status_code == 206, (header, part.text)
        assert part.content == body, header
        start = 10 - len(body) if header.startswith("bytes=-") else int(header[6:].split("-")[0])
        assert part.headers["content-range"] == f"bytes {start}-{start + len(body) - 1}/10"
        assert part.headers["content-length"] == str(len(body))
        for name in ("content-type", "etag", "from", "x-spread-iteration"):
            assert part.headers[name] == whole.headers[name], name
        exposed = {name.strip().lower() for name in part.headers["access-control-expose-headers"].split(",")}
        assert {"content-range", "accept-ranges"} <= exposed
    # If-Range: the range only while the value is still the one the client has part of.
    etag = f'"{report["id"]}"'
    assert client.get("/raw/read/ranged", headers={"Range": "bytes=0-1", "If-Range": etag}).content == b"01"
    stale = client.get("/raw/read/ranged", headers={"Range": "bytes=0-1", "If-Range": '"an-older-id"'})
    assert (stale.status_code, stale.content) == (200, b"0123456789")
    # Ranges HTTP lets a server ignore are answered whole: several, backwards, another unit.
    for header in ("bytes=0-1,5-6", "bytes=5-2", "lines=1-2", "bytes=x-"):
        ignored = client.get("/raw/read/ranged", headers={"Range": header})
        assert (ignored.status_code, ignored.content) == (200, b"0123456789"), header


def test_a_range_past_the_end_is_416_json_with_the_size(client: httpx.Client, auth: dict[str, str]) -> None:
    before = probe_iteration(client, auth)
    write(client, "read/short", b"abc", auth)
    for header in ("bytes=3-", "bytes=10-20", "bytes=-0"):
        refused = client.get("/raw/read/short", headers={"Range": header})
        assert_json_error(refused, 416, "range_not_satisfiable")
        assert refused.headers["content-range"] == "bytes */3"
    assert client.get("/raw/read/short").content == b"abc"
    assert probe_iteration(client, auth) == before + 2  # the write and the probe: reads store nothing


def test_a_range_in_the_middle_of_a_chunked_blob(client: httpx.Client, auth: dict[str, str]) -> None:
    value = os.urandom(3 * CHUNK_SIZE + 777)
    write(client, "read/ranged-blob", value, auth, **{"Content-Type": "video/mp4"})
    start, stop = CHUNK_SIZE - 10, 2 * CHUNK_SIZE + 20  # across two chunk boundaries
    part = client.get("/raw/read/ranged-blob", headers={"Range": f"bytes={start}-{stop - 1}"})
    assert part.status_code == 206
    assert part.content == value[start:stop]
    assert part.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(value)}"
    assert part.headers["content-length"] == str(stop - start)
    tail = client.get("/raw/read/ranged-blob", headers={"Range": "bytes=-100"})
    assert (tail.status_code, tail.content) == (206, value[-100:])


def test_unknown_and_deleted_topics_are_404_json(client: httpx.Client, auth: dict[str, str]) -> None:
    assert_json_error(client.get("/raw/read/never-written"), 404, "not_found")
    assert client.head("/raw/read/never-written").status_code == 404

    write(client, "read/deleted", b"soon gone", auth)
    deleted = client.delete("/raw/read/deleted", headers=auth)
    assert deleted.status_code == 200, deleted.text
    assert_json_error(client.get("/raw/read/deleted"), 404, "not_found")
    head = client.head("/raw/read/deleted")
    assert head.status_code == 404
    assert head.content == b""


# ----------------------------------------------------------------------------------------------
# Writes


def test_post_reports_id_path_status_iteration_and_propagation_per_ancestor(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    first = client.post("/raw/write/report/leaf", content=b"one", headers=auth)
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/json"
    body = first.json()
    assert set(body) == {"id", "path", "status", "iteration", "propagation"}
    assert re.fullmatch(r"[0-9a-f]+", body["id"])
    assert body["path"] == "write/report/leaf"
    assert body["status"] == "ok"
    assert isinstance(body["iteration"], int) and body["iteration"] > 0
    assert body["propagation"] == propagation("", "write", "write/report", "write/report/leaf")

    second = write(client, "write/report/leaf", b"two", auth)
    assert second["iteration"] == body["iteration"] + 1
    assert second["id"] != body["id"]


def test_x_spread_etag_sets_the_event_date_quoted_or_bare(client: httpx.Client, auth: dict[str, str]) -> None:
    write(client, "write/dated", b"quoted", auth, **{"X-Spread-Etag": f'"{DATE}"'})
    quoted = client.get("/raw/write/dated")
    assert quoted.headers["x-spread-etag"] == f'"{DATE}"'
    assert quoted.content == b"quoted"

    write(client, "write/dated", b"bare", auth, **{"X-Spread-Etag": str(DATE + 1)})
    bare = client.get("/raw/write/dated")
    assert bare.headers["x-spread-etag"] == f'"{DATE + 1}"'
    assert bare.content == b"bare"

    write(client, "write/dated-zero", b"edge", auth, **{"X-Spread-Etag": '"0"'})
    assert client.get("/raw/write/dated-zero").headers["x-spread-etag"] == '"0"'
    # The largest 64-bit date parses, and is then refused as too far ahead (MAX_FUTURE_SKEW).
    response = client.post(
        "/raw/write/dated-max", content=b"edge", headers={**auth, "X-Spread-Etag": f'"{2**63 - 1}"'}
    )
    assert_json_error(response, 400, "date_too_far_ahead")


def test_an_older_date_is_too_late_and_leaves_the_value(client: httpx.Client, auth: dict[str, str]) -> None:
    write(client, "write/lww", b"newer", auth, **{"X-Spread-Etag": str(DATE + 10)})
    before = snapshot(client, "write/lww")
    late = write(client, "write/lww", b"older", auth, **{"X-Spread-Etag": str(DATE)})
    assert late["status"] == "too_late"
    assert late["path"] == "write/lww"
    assert late["propagation"] == propagation("", "write", "write/lww")
    assert snapshot(client, "write/lww") == before
    assert before[1] == b"newer"


def test_the_same_event_twice_is_existing_and_takes_no_iteration(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    first = write(client, "write/retry", b"once", auth, **{"X-Spread-Etag": str(DATE)})
    assert first["status"] == "ok"
    again = write(client, "write/retry", b"once", auth, **{"X-Spread-Etag": f'"{DATE}"'})
    assert again["status"] == "existing"
    assert again["id"] == first["id"]
    assert again["iteration"] == first["iteration"]
    assert probe_iteration(client, auth) == first["iteration"] + 1
    response = client.get("/raw/write/retry")
    assert response.content == b"once"
    assert response.headers["x-spread-iteration"] == str(first["iteration"])


def test_equal_dates_are_decided_by_origin(client: httpx.Client) -> None:
    token_b = bearer(device_token("dev-b"))
    token_a = bearer(device_token("dev-a"))
    from_b = write(client, "write/tie", b"from b", token_b, **{"X-Spread-Etag": str(DATE)})
    from_a = write(client, "write/tie", b"from a", token_a, **{"X-Spread-Etag": str(DATE)})
    assert from_b["status"] == "ok"
    assert from_a["status"] == "too_late"  # same date: the greater origin ("dev-b") wins
    response = client.get("/raw/write/tie")
    assert response.content == b"from b"
    assert response.headers["from"] == "dev-b"


def test_create_only_write_to_a_topic_with_a_value_is_409_with_the_current_event(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    first = write(client, "write/once", b"first", auth, **{"If-None-Match": "*"})
    assert first["status"] == "ok"
    before = snapshot(client, "write/once")
    start = probe_iteration(client, auth)

    conflict = client.post("/raw/write/once", content=b"second", headers={**auth, "If-None-Match": "*"})
    body = assert_json_error(conflict, 409, "exists")
    assert set(body) == {"error", "detail", "current"}
    current = body["current"]
    assert current["id"] == first["id"]
    assert current["path"] == "write/once"
    assert current["iteration"] == first["iteration"]
    assert current["from"] == "dev-test"
    assert probe_iteration(client, auth) == start + 1
    assert snapshot(client, "write/once") == before


def test_create_only_write_succeeds_on_a_new_or_deleted_topic(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    created = write(client, "write/create-only", b"first", auth, **{"If-None-Match": "*"})
    assert created["status"] == "ok"
    assert client.get("/raw/write/create-only").content == b"first"

    assert client.delete("/raw/write/create-only", headers=auth).status_code == 200
    recreated = write(client, "write/create-only", b"again", auth, **{"If-None-Match": "*"})
    assert recreated["status"] == "ok"
    assert recreated["iteration"] > created["iteration"]
    assert client.get("/raw/write/create-only").content == b"again"


def test_an_empty_body_is_400_and_stores_nothing(client: httpx.Client, auth: dict[str, str]) -> None:
    write(client, "write/empty", b"kept", auth)
    before = snapshot(client, "write/empty")
    start = probe_iteration(client, auth)
    assert_json_error(client.post("/raw/write/empty", content=b"", headers=auth), 400, "empty_body")
    assert_json_error(client.post("/raw/write/never-empty", headers=auth), 400, "empty_body")
    chunked = client.post("/raw/write/empty", content=iter([]), headers=auth)
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    assert_json_error(chunked, 400, "empty_body")
    assert probe_iteration(client, auth) == start + 1
    assert snapshot(client, "write/empty") == before
    assert client.get("/raw/write/never-empty").status_code == 404


def test_delete_writes_a_tombstone_and_a_later_write_revives(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    created = write(client, "write/tomb", b"alive", auth)
    response = client.delete("/raw/write/tomb", headers=auth)
    assert response.status_code == 200
    report = response.json()
    assert set(report) == {"id", "path", "status", "iteration", "propagation"}
    assert report["path"] == "write/tomb"
    assert report["status"] == "ok"
    assert report["iteration"] == created["iteration"] + 1
    assert report["id"] != created["id"]
    assert report["propagation"] == propagation("", "write", "write/tomb")
    assert client.get("/raw/write/tomb").status_code == 404

    revived = write(client, "write/tomb", b"again", auth)
    assert revived["status"] == "ok"
    assert client.get("/raw/write/tomb").content == b"again"


def test_a_delete_dated_before_the_value_is_too_late(client: httpx.Client, auth: dict[str, str]) -> None:
    write(client, "write/late-delete", b"stays", auth, **{"X-Spread-Etag": str(DATE + 5)})
    response = client.delete("/raw/write/late-delete", headers={**auth, "X-Spread-Etag": str(DATE)})
    assert response.status_code == 200
    assert response.json()["status"] == "too_late"
    assert client.get("/raw/write/late-delete").content == b"stays"


def test_options_preflight_allows_the_api_headers_and_methods(client: httpx.Client) -> None:
    response = client.options(
        "/raw/any/topic",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-spread-etag",
        },
    )
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == "*"
    allowed_headers = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-spread-etag", "if-none-match"} <= allowed_headers
    methods = {m.strip().upper() for m in response.headers["access-control-allow-methods"].split(",")}
    assert {"GET", "HEAD", "POST", "DELETE"} <= methods


# ----------------------------------------------------------------------------------------------
# Paths


def test_an_escaped_slash_stays_inside_a_segment(client: httpx.Client, auth: dict[str, str]) -> None:
    escaped = write(client, "x/a%2Fb/c", b"two segments", auth)
    assert escaped["path"] == "x/a%2Fb/c"
    assert escaped["propagation"] == propagation("", "x", "x/a%2Fb", "x/a%2Fb/c")
    plain = write(client, "x/a/b/c", b"three segments", auth)
    assert plain["path"] == "x/a/b/c"
    assert plain["id"] != escaped["id"]

    assert client.get("/raw/x/a%2Fb/c").content == b"two segments"
    assert client.get("/raw/x/a/b/c").content == b"three segments"
    # Lower-case escapes name the same topic (the canonical form escapes in upper case).
    assert send_raw(client, "GET", b"/raw/x/a%2fb/c").content == b"two segments"


def test_non_ascii_segments_round_trip(client: httpx.Client, auth: dict[str, str]) -> None:
    segments = ["x", "café", "日本語", "emoji 🎉"]
    canonical = "/".join(quote(segment, safe="") for segment in segments)
    report = write(client, canonical, "ünïcode value".encode(), auth)
    assert report["path"] == canonical == "x/caf%C3%A9/%E6%97%A5%E6%9C%AC%E8%AA%9E/emoji%20%F0%9F%8E%89"
    # httpx escapes the raw characters itself: the same topic.
    response = client.get("/raw/" + "/".join(segments))
    assert response.status_code == 200
    assert response.content == "ünïcode value".encode()
    assert send_raw(client, "GET", ("/raw/" + canonical.lower()).encode()).content == "ünïcode value".encode()


def test_longest_segment_and_deepest_path_are_accepted(client: httpx.Client, auth: dict[str, str]) -> None:
    long_segment = "é" * 127 + "a"  # 255 bytes of UTF-8
    report = write(client, "x/" + quote(long_segment, safe=""), b"long", auth)
    assert report["path"] == "x/" + quote(long_segment, safe="")
    deep = "/".join(f"d{i}" for i in range(32))
    deep_report = write(client, deep, b"deep", auth)
    assert deep_report["path"] == deep
    assert len(deep_report["propagation"]) == 33
    assert client.get(f"/raw/{deep}").content == b"deep"


# Each is (why it is bad, raw request target below /raw/).
BAD_TARGETS: list[tuple[str, bytes]] = [
    ("empty segment", b"bad//p"),
    ("leading empty segment", b"/bad/p"),
    ("trailing slash", b"bad/p/"),
    ("root", b""),
    ("dot segment", b"bad/./p"),
    ("dot-dot segment", b"bad/x/../p"),
    ("escaped dot-dot segment", b"bad/x/%2E%2E/p"),
    ("escaped dot segment", b"bad/%2e/p"),
    ("NUL", b"bad/p%00"),
    ("newline", b"bad/p%0A"),
    ("carriage return", b"bad/p%0D"),
    ("DEL", b"bad/p%7F"),
    ("C1 control (NEL)", b"bad/p%C2%85"),
    ("invalid escape", b"bad/p%zz"),
    ("truncated escape", b"bad/p%2"),
    ("lone percent", b"bad/p%"),
    ("invalid UTF-8 byte", b"bad/p%ff"),
    ("truncated UTF-8", b"bad/p%C3"),
    ("overlong UTF-8 slash", b"bad/p%C0%AF"),
    ("UTF-8 surrogate", b"bad/p%ED%A0%80"),
    ("256-byte segment", b"bad/" + b"a" * 256),
    ("256-byte escaped segment", b"bad/" + b"%C3%A9" * 128),
    ("33 segments", b"/".join([b"s"] * 33)),
    ("10,000 segments", b"/".join([b"s"] * 10_000)),
]


def test_bad_paths_are_400_json_for_every_method_and_change_nothing(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    write(client, "bad/p", b"untouched", auth)
    before = {path: snapshot(client, path) for path in ("bad/p", "bad", "p", "bad/x")}
    start = probe_iteration(client, auth)
    failures = []
    for reason, target in BAD_TARGETS:
        for method in ("GET", "POST", "DELETE"):
            body = b"overwrite?" if method == "POST" else None
            response = send_raw(client, method, b"/raw/" + target, content=body, headers=auth)
            try:
                assert_json_error(response, 400, "invalid_path")
            except AssertionError as exc:
                failures.append(f"{reason} {method}: {exc}")
        head = send_raw(client, "HEAD", b"/raw/" + target)
        if head.status_code != 400:
            failures.append(f"{reason} HEAD: {head.status_code}")
    assert not failures, "\n".join(failures)
    assert probe_iteration(client, auth) == start + 1
    assert {path: snapshot(client, path) for path in before} == before


def test_malformed_headers_are_400_json_and_change_nothing(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    write(client, "bad/h", b"untouched", auth)
    before = snapshot(client, "bad/h")
    start = probe_iteration(client, auth)
    bad_write_headers = [
        *({"X-Spread-Etag": value} for value in ["abc", '"12', '12"', "-5", "1e9", "1.5", "0x10", ""]),
        {"X-Spread-Etag": str(2**64)},
        {"X-Spread-Etag": str(2**63)},  # just past the largest 64-bit date
        {"X-Spread-Etag": '"1", "2"'},
        {"If-None-Match": f'"{"0" * 32}"'},  # on writes only * is supported
        {"If-None-Match": "abc"},
        {"X-Spread-Sha256": "xyz"},
        {"X-Spread-Sha256": "a" * 63},
        {"X-Spread-Sha256": "a" * 65},
        {"X-Spread-Sha256": "g" * 64},
        {"Content-Type": "text/" + "x" * 300},
    ]
    failures = []
    for headers in bad_write_headers:
        for method, body in (("POST", b"overwrite?"), ("DELETE", None)):
            if method == "DELETE" and "X-Spread-Sha256" in headers:
                continue
            response = client.request(method, "/raw/bad/h", content=body, headers={**auth, **headers})
            try:
                assert_json_error(response, 400, "invalid_header")
            except AssertionError as exc:
                failures.append(f"{method} {headers}: {exc}")
    for value in ["abc", '"unterminated', "W/", ",", "", '"a" "b"', '"a",,']:
        response = client.get("/raw/bad/h", headers={"If-None-Match": value})
        try:
            assert_json_error(response, 400, "invalid_header")
        except AssertionError as exc:
            failures.append(f"GET If-None-Match {value!r}: {exc}")
    assert not failures, "\n".join(failures)
    assert probe_iteration(client, auth) == start + 1
    assert snapshot(client, "bad/h") == before


def test_x_spread_sha256_is_checked(client: httpx.Client, auth: dict[str, str]) -> None:
    value = b"checked value"
    digest = hashlib.sha256(value).hexdigest()
    matching = client.post("/raw/sha/ok", content=value, headers={**auth, "X-Spread-Sha256": digest.upper()})
    assert matching.status_code == 200, matching.text
    stored = client.get("/raw/sha/ok")
    assert stored.content == value
    assert stored.headers["x-spread-sha256"] == digest

    write(client, "sha/inline", b"previous", auth)
    before = snapshot(client, "sha/inline")
    start = probe_iteration(client, auth)
    mismatch = client.post(
        "/raw/sha/inline", content=b"tampered", headers={**auth, "X-Spread-Sha256": digest}
    )
    assert_json_error(mismatch, 400, "digest_mismatch")
    assert probe_iteration(client, auth) == start + 1
    assert snapshot(client, "sha/inline") == before


def test_a_blob_with_a_wrong_sha256_is_not_served(client: httpx.Client, auth: dict[str, str]) -> None:
    write(client, "sha/blob", b"previous", auth)
    before = snapshot(client, "sha/blob")
    blob = os.urandom(CHUNK_SIZE + INLINE_MAX)
    response = client.post(
        "/raw/sha/blob", content=blob, headers={**auth, "X-Spread-Sha256": hashlib.sha256(b"x").hexdigest()}
    )
    assert_json_error(response, 400, "digest_mismatch")
    assert snapshot(client, "sha/blob") == before


# ----------------------------------------------------------------------------------------------
# Authentication and authorisation


def forged_token(uid: str) -> str:
    """A well-formed device token signed with another key."""
    payload = dict(device_token(uid).payload)
    return jwt.encode(payload, "not-the-node-secret-key-but-long-enough-for-hs256", algorithm="HS256")


def expired_token(uid: str) -> str:
    token = device_token(uid)
    token.set_exp(lifetime=timedelta(minutes=-5))
    return str(token)


def test_writes_without_a_valid_token_are_401_json_and_store_nothing(
    client: httpx.Client, auth: dict[str, str], token: str
) -> None:
    write(client, "auth/guarded", b"original", auth)
    before = snapshot(client, "auth/guarded")
    start = probe_iteration(client, auth)
    bad_headers: dict[str, dict[str, str]] = {
        "no token": {},
        "malformed": {"Authorization": "Bearer not-a-jwt"},
        "truncated": {"Authorization": f"Bearer {token[:-6]}"},
        "wrong signature": bearer(forged_token("dev-forger")),
        "expired": bearer(expired_token("dev-old")),
        "wrong scheme": {"Authorization": f"Basic {token}"},
        "malformed in query": {},
    }
    failures = []
    for reason, headers in bad_headers.items():
        params = {"authorization": "Bearer garbage"} if reason == "malformed in query" else None
        for method, path in (("POST", "auth/guarded"), ("POST", "auth/new"), ("DELETE", "auth/guarded")):
            content = b"intruder" if method == "POST" else None
            response = client.request(method, f"/raw/{path}", content=content, headers=headers, params=params)
            try:
                assert_json_error(response, 401)
                assert response.headers.get("www-authenticate", "").startswith("Bearer")
            except AssertionError as exc:
                failures.append(f"{reason} {method} {path}: {exc}")
    assert not failures, "\n".join(failures)
    assert probe_iteration(client, auth) == start + 1
    assert snapshot(client, "auth/guarded") == before
    assert client.get("/raw/auth/new").status_code == 404


def test_a_token_in_the_query_parameter_authenticates(client: httpx.Client) -> None:
    token = str(device_token("dev-query"))
    response = client.post(f"/raw/auth/query?authorization=Bearer%20{token}", content=b"via query")
    assert response.status_code == 200, response.text
    read = client.get("/raw/auth/query")
    assert read.content == b"via query"
    assert read.headers["from"] == "dev-query"


def test_jwttoken_issues_a_device_token_that_writes_as_its_uid(client: httpx.Client) -> None:
    issued = client.post("/jwttoken")
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert set(body) == {"uid", "token"}
    another = client.post("/jwttoken").json()
    assert another["uid"] != body["uid"]

    report = write(client, "auth/device", b"from a device", bearer(body["token"]))
    assert report["status"] == "ok"
    assert client.get("/raw/auth/device").headers["from"] == body["uid"]


def test_write_claim_limits_writes_to_its_prefixes(client: httpx.Client) -> None:
    limited = bearer(device_token("dev-limited", write=["a"]))
    forbidden = client.post("/raw/b/x", content=b"no", headers=limited)
    assert_json_error(forbidden, 403, "forbidden")
    # "a" covers a and its descendants, not topics that merely start with the letter.
    assert_json_error(client.post("/raw/ab/x", content=b"no", headers=limited), 403, "forbidden")
    assert_json_error(client.delete("/raw/b/x", headers=limited), 403, "forbidden")
    assert client.get("/raw/b/x").status_code == 404
    assert client.get("/raw/ab/x").status_code == 404

    allowed = client.post("/raw/a/x", content=b"yes", headers=limited)
    assert allowed.status_code == 200, allowed.text
    read = client.get("/raw/a/x")
    assert read.content == b"yes"
    assert read.headers["from"] == "dev-limited"


def test_a_read_only_token_cannot_write(client: httpx.Client, auth: dict[str, str]) -> None:
    write(client, "auth/readonly", b"original", auth)
    read_only = bearer(device_token("dev-reader", write=[]))
    assert_json_error(client.post("/raw/auth/readonly", content=b"no", headers=read_only), 403, "forbidden")
    assert_json_error(client.delete("/raw/auth/readonly", headers=read_only), 403, "forbidden")
    read = client.get("/raw/auth/readonly", headers=read_only)
    assert read.status_code == 200
    assert read.content == b"original"


def test_a_django_user_token_writes_as_the_username(api_node: LiveNode, client: httpx.Client) -> None:
    script = (
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_user('alice', password='alice-secret-pw')"
    )
    subprocess.run(
        [sys.executable, str(MANAGE_PY), "shell", "-c", script],
        env=api_node.env,
        cwd=str(MANAGE_PY.parent),
        check=True,
        capture_output=True,
    )
    wrong = client.post("/api/token/", json={"username": "alice", "password": "wrong"})
    assert_json_error(wrong, 401)

    pair = client.post("/api/token/", json={"username": "alice", "password": "alice-secret-pw"})
    assert pair.status_code == 200, pair.text
    tokens = pair.json()
    report = write(client, "auth/user", b"from alice", bearer(tokens["access"]))
    assert report["status"] == "ok"
    assert client.get("/raw/auth/user").headers["from"] == "alice"

    refresh_as_access = client.post("/raw/auth/user", content=b"no", headers=bearer(tokens["refresh"]))
    assert_json_error(refresh_as_access, 401, "token_not_valid")

    refreshed = client.post("/api/token/refresh/", json={"refresh": tokens["refresh"]})
    assert refreshed.status_code == 200, refreshed.text
    write(client, "auth/user", b"alice again", bearer(refreshed.json()["access"]))
    read = client.get("/raw/auth/user")
    assert read.content == b"alice again"
    assert read.headers["from"] == "alice"


# ----------------------------------------------------------------------------------------------
# Upload size limit (node with MAX_UPLOAD = 64 KiB)


def test_an_upload_over_max_upload_with_content_length_is_413(
    small_client: httpx.Client, auth: dict[str, str]
) -> None:
    write(small_client, "limit/known", b"previous", auth)
    before = snapshot(small_client, "limit/known")
    start = probe_iteration(small_client, auth)
    response = small_client.post("/raw/limit/known", content=b"x" * (SMALL_MAX_UPLOAD + 1), headers=auth)
    assert response.request.headers["content-length"] == str(SMALL_MAX_UPLOAD + 1)
    assert_json_error(response, 413, "too_large")
    assert probe_iteration(small_client, auth) == start + 1
    assert snapshot(small_client, "limit/known") == before

    at_limit = os.urandom(SMALL_MAX_UPLOAD)
    write(small_client, "limit/known", at_limit, auth)
    assert small_client.get("/raw/limit/known").content == at_limit


def test_a_chunked_upload_over_max_upload_is_413_and_not_served(
    small_client: httpx.Client, auth: dict[str, str]
) -> None:
    write(small_client, "limit/stream", b"previous", auth)
    before = snapshot(small_client, "limit/stream")

    def body() -> Iterator[bytes]:
        # Past the inline size first, so the server has started a blob before the limit.
        for _ in range(2 * SMALL_MAX_UPLOAD // 8192):
            yield b"y" * 8192
            time.sleep(0.01)

    response = small_client.post("/raw/limit/stream", content=body(), headers=auth)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_json_error(response, 413, "too_large")
    assert snapshot(small_client, "limit/stream") == before
    assert before[1] == b"previous"


# ----------------------------------------------------------------------------------------------
# OpenAPI


def test_openapi_schema_describes_the_raw_topic_path(client: httpx.Client) -> None:
    response = client.get("/api/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.text)
    assert schema["openapi"].startswith("3.")
    raw = schema["paths"]["/raw/{topic}"]
    assert {"get", "post", "delete"} <= set(raw)
    assert "/jwttoken" in schema["paths"]


def test_api_docs_page_loads_its_assets_from_the_node(client: httpx.Client) -> None:
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "swagger-ui" in html
    assert not re.search(r"https?://", html), re.findall(r"https?://[^\"' ]+", html)
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
    assert assets
    for asset in assets:
        assert asset.startswith("/static/"), asset
        assert client.get(asset).status_code == 200, asset


# ----------------------------------------------------------------------------------------------
# Dates far in the future, and values that must never act as pages of the site


def test_a_date_beyond_max_future_skew_is_refused_and_changes_nothing(
    client: httpx.Client, auth: dict[str, str]
) -> None:
    write(client, "skew/t", b"kept", auth)
    before = snapshot(client, "skew/t")
    start = probe_iteration(client, auth)
    now_us = time.time_ns() // 1000
    beyond = now_us + int((300 + 60) * 1e6)  # the default MAX_FUTURE_SKEW is 300 s
    for method, body in (("POST", b"from the future"), ("DELETE", None)):
        response = client.request(
            method, "/raw/skew/t", content=body, headers={**auth, "X-Spread-Etag": str(beyond)}
        )
        assert "300 s ahead" in assert_json_error(response, 400, "date_too_far_ahead")["detail"]
    assert probe_iteration(client, auth) == start + 1
    assert snapshot(client, "skew/t") == before
    # Within the bound the date is the client's to choose.
    near = now_us + 10_000_000
    assert write(client, "skew/t", b"soon", auth, **{"X-Spread-Etag": str(near)})["status"] == "ok"
    assert client.get("/raw/skew/t").headers["x-spread-etag"] == f'"{near}"'


@pytest.mark.parametrize(
    ("content_type", "attachment"),
    [
        ("text/html; charset=utf-8", True),
        ("image/svg+xml", True),
        ("application/xhtml+xml", True),
        ("text/javascript", True),
        ("application/vnd.evil+xml", True),
        ("text/plain; charset=utf-8", False),
        ("application/json", False),
        ("image/png", False),
    ],
)
def test_raw_values_never_run_as_pages_of_the_site(
    client: httpx.Client, auth: dict[str, str], content_type: str, attachment: bool
) -> None:
    path = f"xss/{content_type.split(';')[0].replace('/', '-')}"
    payload = b"<script>document.title='owned'</script>"
    write(client, path, payload, auth, **{"Content-Type": content_type})
    response = client.get(f"/raw/{path}")
    assert response.status_code == 200 and response.content == payload
    assert response.headers["content-type"] == content_type
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy.split(";")[1]
    assert (response.headers.get("content-disposition") == "attachment") is attachment
    # Errors and write reports of the raw API carry the same protection.
    missing = client.get(f"/raw/{path}-missing")
    assert missing.status_code == 404 and missing.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in missing.headers["content-security-policy"]
    assert "content-disposition" not in missing.headers  # our JSON errors are not attachments
    report = client.post(f"/raw/{path}", content=payload, headers={**auth, "Content-Type": content_type})
    assert (
        report.headers["content-type"] == "application/json" and "content-disposition" not in report.headers
    )
