"""Property tests of a real node's input handling (hypothesis, bounded and derandomized for CI).

Arbitrary request paths, header values and websocket frames. The properties: every answer is a
2xx/3xx or a 4xx with a JSON ``{"error", "detail"}`` body (never a 5xx); a rejected write leaves
the store as it was (test_raw_api's dense probe iterations); a websocket answers a frame it refuses
with an error frame (never "internal") in plain JSON, stays open, and stores only the posts it
acknowledges; and the node's log never shows a traceback.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import ClientConnection, connect

from spread_core.testing import LiveNode

from .realtime import DEADLINE, writer_token
from .test_bad_input import CRASH_MARKERS
from .test_raw_api import probe_iteration, send_raw

pytestmark = pytest.mark.e2e

#: Bounded budgets: the whole module stays well under a minute on two cores.
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
METHODS = ("GET", "HEAD", "POST", "DELETE")
SERVER_FRAMES = {"update", "synced", "heartbeat", "ack", "pong", "error"}
#: Where the fuzzed websocket may write; every other path must be refused.
WRITABLE = "fuzz-ok"


@pytest.fixture(scope="module")
def fuzz_node(module_nodes: Callable[..., LiveNode]) -> LiveNode:
    return module_nodes("fuzz-inputs")


@pytest.fixture(scope="module")
def http(fuzz_node: LiveNode) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzz_node.url, timeout=60.0) as client:
        yield client


@pytest.fixture(autouse=True)
def log_stays_clean(fuzz_node: LiveNode) -> Iterator[None]:
    assert fuzz_node.log_path is not None
    offset = fuzz_node.log_path.stat().st_size
    yield
    with open(fuzz_node.log_path, "rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    for marker in CRASH_MARKERS:
        assert marker not in text, f"{marker!r} in the node's log:\n{text[-3000:]}"


def assert_answer(response: httpx.Response) -> None:
    """2xx/3xx, or a 4xx whose body (unless HEAD) is a JSON error."""
    where = f"{response.request.method} {response.request.extensions.get('target', response.request.url)!r}"
    assert response.status_code < 500, (where, response.status_code, response.text[:500])
    if response.status_code < 400 or response.request.method == "HEAD":
        return
    assert response.headers["content-type"].startswith("application/json"), (where, response.headers)
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], (where, body)
    assert isinstance(body.get("detail"), str) and body["detail"], (where, body)


def assert_write_stored_only_if_accepted(response: httpx.Response, before: int, after: int) -> None:
    """``before``/``after``: probe iterations around the request (dense: a stored event takes one;
    a repeated event, "existing", takes none)."""
    stored = 0
    if response.status_code == 200 and response.request.method in {"POST", "DELETE"}:
        stored = int(response.json()["status"] != "existing")
    assert after == before + 1 + stored, (response.request.method, response.status_code, response.text[:300])


# ----------------------------------------------------------------------------------------------
# Strategies


#: Pieces of paths that parsers trip on.
NASTY_SEGMENTS = [
    "",
    ".",
    "..",
    "%",
    "%2",
    "%zz",
    "%ff",
    "%C3",
    "%C0%AF",
    "%ED%A0%80",
    "%00",
    "%2F",
    "%2e%2E",
]
#: Printable ASCII a raw request target may carry (h11, the client, refuses spaces and controls).
RAW_ASCII = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


@st.composite
def segment(draw: st.DrawFn) -> str:
    """One segment of a request target: escaped arbitrary text, raw printable ASCII, or a trap."""
    kind = draw(st.sampled_from(["escaped", "escaped", "escaped", "raw", "nasty"]))
    if kind == "nasty":
        return draw(st.sampled_from(NASTY_SEGMENTS))
    if kind == "raw":
        return draw(st.text(RAW_ASCII.filter(lambda c: c not in "/?#"), min_size=1, max_size=12))
    text = draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=12))
    return quote(text.encode("utf-8", "surrogatepass"), safe=draw(st.sampled_from(["", "~!$&'()*+,;=:@"])))


#: A segment of a valid path, escaped like the canonical form.
clean_segment = (
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=12)
    .filter(lambda text: text not in (".", ".."))
    .map(lambda text: quote(text, safe=""))
)
request_targets = st.builds(
    lambda segments, tail: ("/".join(segments) + tail).encode("ascii"),
    st.one_of(
        st.lists(clean_segment, min_size=1, max_size=6),
        st.lists(segment(), min_size=1, max_size=6),
        st.lists(st.just("s"), min_size=30, max_size=40),
    ),
    st.sampled_from(["", "?", "?at=1", "?at=-1", "?at_date=%C2%B2", "#frag", "?authorization=Bearer%20x"]),
)

#: Header values h11 can send: printable latin-1 with inner spaces and tabs, no edge whitespace.
header_values = st.text(
    st.one_of(
        st.characters(min_codepoint=0x20, max_codepoint=0x7E),
        st.characters(min_codepoint=0x80, max_codepoint=0xFF),
        st.just("\t"),
    ),
    max_size=80,
)
spread_header_values = st.one_of(
    header_values,
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.integers(min_value=0, max_value=2**64).map(lambda n: f'"{n}"'),
    st.sampled_from(["*", '"a", *', 'W/"x"', '""', "Bearer", "Bearer a.b.c", "Bearer  x", "\xb2"]),
).map(lambda value: value.strip(" \t"))
header_names = st.sampled_from(
    ["X-Spread-Etag", "If-None-Match", "X-Spread-Sha256", "Content-Type", "Authorization"]
)

#: JSON text may escape what UTF-8 cannot carry: unpaired surrogates (json.dumps writes them as
#: \\udXXX), and Python's json writes NaN and Infinity, which are not JSON.
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(st.characters(exclude_categories=()), max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
frame_paths = st.one_of(
    st.sampled_from([WRITABLE, f"{WRITABLE}/a", f"{WRITABLE}/b/c", "elsewhere/x", "", "a//b", "a/../b"]),
    st.text(max_size=20).map(lambda text: f"{WRITABLE}/{text}"),
    st.text(max_size=20),
    st.lists(st.text(max_size=8), max_size=4).map(lambda segments: [WRITABLE, *segments]),
    json_values,
)
values = st.one_of(st.text(max_size=40), json_values)
values_b64 = st.one_of(
    st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=12)
)
#: The optional fields of a frame, often of the wrong type.
frame_fields = {
    "since": st.one_of(st.integers(min_value=-5, max_value=2**66), json_values),
    "history": json_values,
    "value": values,
    "value_b64": values_b64,
    "content_type": st.one_of(st.sampled_from(["text/plain", "application/json"]), json_values),
    # Not "": an empty token signs the socket out (no error), and the posts after it explore less.
    "token": st.one_of(st.text(min_size=1, max_size=20), json_values.filter(lambda value: value != "")),
    "ref": json_values,
}
#: Frames with a known type and arbitrary fields; posts with a path and a value more often.
typed_frames = st.one_of(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["subscribe", "unsubscribe", "post", "auth", "ping"])},
        optional={"path": frame_paths, **frame_fields},
    ),
    st.fixed_dictionaries(
        {"type": st.just("post"), "path": frame_paths, "value": values},
        optional={name: fields for name, fields in frame_fields.items() if name != "value"},
    ),
    st.fixed_dictionaries(
        {"type": st.just("post"), "path": frame_paths, "value_b64": values_b64},
        optional={name: fields for name, fields in frame_fields.items() if name != "value_b64"},
    ),
)
#: Anything a client can put in a frame: mostly typed frames, then any JSON, any text, any bytes.
frames = st.one_of(
    typed_frames.map(json.dumps),
    typed_frames.map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=60),
    st.binary(max_size=60),
)


# ----------------------------------------------------------------------------------------------
# HTTP


def test_arbitrary_request_paths_get_json_answers_and_refused_writes_store_nothing(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    @FUZZ
    @given(target=request_targets, method=st.sampled_from(METHODS))
    def check(target: bytes, method: str) -> None:
        before = probe_iteration(http, auth)
        content = b"fuzzed value" if method == "POST" else None
        response = send_raw(http, method, b"/raw/" + target, content=content, headers=auth)
        assert_answer(response)
        assert_write_stored_only_if_accepted(response, before, probe_iteration(http, auth))
        if target.split(b"?")[0].split(b"#")[0]:  # /history/ itself: see test_bad_input's xfail
            assert_answer(send_raw(http, "GET", b"/history/" + target))

    check()


def test_arbitrary_header_values_get_json_answers_and_refused_writes_store_nothing(
    fuzz_node: LiveNode, http: httpx.Client, auth: dict[str, str]
) -> None:
    @FUZZ
    @given(name=header_names, value=spread_header_values, method=st.sampled_from(METHODS))
    def check(name: str, value: str, method: str) -> None:
        headers = {**auth, name: value.encode("latin-1")}
        before = probe_iteration(http, auth)
        content = b"fuzzed value" if method == "POST" else None
        response = http.request(method, "/raw/fuzz/headers", content=content, headers=headers)
        assert_answer(response)
        assert_write_stored_only_if_accepted(response, before, probe_iteration(http, auth))
        # The same value as an SSE resume cursor: a stream (left unread) or a JSON 4xx.
        sse_headers = {"Last-Event-ID": value.encode("latin-1")}
        with http.stream("GET", f"/sse/fuzz?since={quote(value)}", headers=sse_headers) as stream:
            if stream.status_code != 200:
                stream.read()
                assert_answer(stream)

    check()


# ----------------------------------------------------------------------------------------------
# WebSocket


def not_json(constant: str) -> Any:
    raise AssertionError(f"the server sent {constant}, which is not JSON")


class Socket:
    """One websocket shared by the examples; reopened if it ever fails (which fails the example
    that caused it)."""

    def __init__(self, node: LiveNode, token: str) -> None:
        self.url = f"ws://127.0.0.1:{node.port}/ws/{WRITABLE}?token={token}"
        self.connection: ClientConnection | None = None
        self.stack = contextlib.ExitStack()
        self.markers = 0

    def open(self) -> ClientConnection:
        if self.connection is None:
            self.connection = self.stack.enter_context(
                connect(self.url, open_timeout=DEADLINE, close_timeout=2)
            )
            self.read_until(lambda frame: frame["type"] == "synced")
        return self.connection

    def answers(self) -> list[dict[str, Any]]:
        """Every frame the server sent in answer to what was sent so far: a marker frame (an
        unsubscribe that cannot succeed) is sent, and frames are read up to its error frame."""
        assert self.connection is not None
        self.markers += 1
        marker = f"marker-{self.markers}"
        self.connection.send(json.dumps({"type": "unsubscribe", "path": f"never/{marker}", "ref": marker}))
        return self.read_until(lambda frame: frame["type"] == "error" and frame.get("ref") == marker)

    def read_until(self, last: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """Frames up to the first for which ``last`` holds; each must be a well-formed frame."""
        assert self.connection is not None
        received = []
        while True:
            raw = self.connection.recv(timeout=DEADLINE)
            assert isinstance(raw, str), f"a binary frame from the server: {raw!r}"
            frame = json.loads(raw, parse_constant=not_json)
            assert isinstance(frame, dict) and frame.get("type") in SERVER_FRAMES, frame
            if frame["type"] == "error":
                assert isinstance(frame["code"], str) and frame["code"] != "internal", frame
                assert isinstance(frame["message"], str) and frame["message"], frame
            if last(frame):
                return received
            received.append(frame)

    def close(self) -> None:
        self.stack.close()
        self.connection = None


def test_arbitrary_websocket_frames_get_answers_the_socket_stays_open_and_only_acked_posts_store(
    fuzz_node: LiveNode, http: httpx.Client, auth: dict[str, str]
) -> None:
    ws = Socket(fuzz_node, writer_token("fuzz-ws", write=[WRITABLE]))
    acked = 0
    start = probe_iteration(http, auth)

    @FUZZ
    @given(frame=frames)
    def check(frame: str | bytes) -> None:
        nonlocal acked
        try:
            ws.open().send(frame)
            answers = ws.answers()
        except Exception:
            ws.close()
            raise
        for answer in answers:
            if answer["type"] == "ack":
                assert answer["report"]["path"].split("/")[0] == WRITABLE, answer
                acked += answer["report"]["status"] == "ok"

    try:
        check()
    finally:
        ws.close()  # pongs and updates may still be on their way: the node must not mind
    assert probe_iteration(http, auth) == start + acked + 1
    # The node still serves other clients.
    with connect(f"ws://127.0.0.1:{fuzz_node.port}/ws/", open_timeout=DEADLINE) as other:
        other.send(json.dumps({"type": "ping", "ref": 1}))
        while (frame := json.loads(other.recv(timeout=DEADLINE)))["type"] != "pong":
            assert frame["type"] in {"update", "synced"}, frame
    assert http.get("/raw/probe/iteration").status_code == 200
