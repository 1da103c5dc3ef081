"""spread.js in Chromium against a scripted node: cursors, resets, the offline queue, barriers.

The node is Playwright's ``route_web_socket`` mock: the test sees every frame the client sends and
sends the node's frames itself, so each rule of the client is checked frame by frame. The same
client against a real node is covered by test_demo_page.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Page, Route, WebSocketRoute

from .chromium import TIMEOUT_MS

SPREAD_JS = Path(__file__).resolve().parents[2] / "spread_api" / "static" / "spread" / "spread.js"
ORIGIN = "http://spread.test"
WEBSOCKET = "ws://spread.test/ws/"
SERVICE_RESTART = 1012
# The harness page: `open_client` and `watch` record everything the client reports in `log`.
HARNESS = """<!doctype html>
<script type="module">
import * as spread from "/spread.js";
window.log = [];
const record = (...entry) => window.log.push(entry);
window.open_client = (options = {}) => {
  window.client = spread.connect("/ws/", {  // ws://spread.test/ws/
    minDelay: 20, maxDelay: 100,
    onStatus: (status) => record("status", status),
    onError: (frame) => record("error", frame.code),
    ...options,
  });
};
window.subscriptions = {};
window.watch = (segments, since = 0) => {
  const path = spread.canonicalPath(segments);
  window.subscriptions[path] = client.subscribe(segments, (e) => record("event", path, e.path, e.iteration), {
    since,
    onReset: () => record("reset", path),
    onSynced: (iteration, { reset }) => record("synced", path, iteration, reset),
    onCursor: (iteration) => record("cursor", path, iteration),
    onError: (frame) => record("refused", path, frame.code),
  });
};
window.send_post = (path, value) => {
  const canonical = spread.canonicalPath(path);
  client.post(path, value).then(
    (report) => record("ack", canonical, report.iteration),
    (error) => record("rejected", canonical, error.code),
  );
};
window.ready = true;
</script>
"""


@dataclass
class Connection:
    """One websocket the client opened on the scripted node."""

    route: WebSocketRoute
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return urlsplit(self.route.url).path

    @property
    def query(self) -> dict[str, str]:
        return {name: values[-1] for name, values in parse_qs(urlsplit(self.route.url).query).items()}

    def send(self, **frame: Any) -> None:
        self.route.send(json.dumps(frame))

    def received_of(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.received if frame["type"] == kind]


class ScriptedNode:
    """Accepts the page's websockets without a server; keeps each connection for the test."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.connections: list[Connection] = []
        page.route_web_socket(f"{WEBSOCKET}**", self._accept)

    def _accept(self, route: WebSocketRoute) -> None:
        connection = Connection(route)
        route.on_message(lambda message: connection.received.append(json.loads(message)))
        self.connections.append(connection)

    def wait(self, condition: Callable[[], bool], what: str) -> None:
        """Let the page and the mock run until ``condition()`` holds."""
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.page.wait_for_timeout(20)

    def connection(self, number: int) -> Connection:
        """The ``number``-th connection (0-based), once the client has opened it."""
        self.wait(lambda: len(self.connections) > number, f"connection {number}")
        return self.connections[number]

    def frame(self, connection: Connection, kind: str, index: int = 0) -> dict[str, Any]:
        """The ``index``-th frame of type ``kind`` the client sent on ``connection``."""
        self.wait(lambda: len(connection.received_of(kind)) > index, f"{kind} frame {index}")
        return connection.received_of(kind)[index]


@pytest.fixture
def node(page: Page) -> ScriptedNode:
    def serve(route: Route) -> None:
        if route.request.url.endswith("/spread.js"):
            route.fulfill(body=SPREAD_JS.read_text(), content_type="text/javascript")
        else:
            route.fulfill(body=HARNESS, content_type="text/html")

    page.route(f"{ORIGIN}/**", serve)
    scripted = ScriptedNode(page)
    page.goto(f"{ORIGIN}/")
    page.wait_for_function("window.ready === true")
    return scripted


def log(page: Page) -> list[list[Any]]:
    return page.evaluate("window.log")


def wait_for_log(page: Page, *entry: Any) -> None:
    page.wait_for_function(
        "(entry) => window.log.some((e) => JSON.stringify(e) === JSON.stringify(entry))", arg=list(entry)
    )


def entries(page: Page, kind: str) -> list[list[Any]]:
    return [entry for entry in log(page) if entry[0] == kind]


def test_client_resumes_every_subscription_from_its_last_iteration_after_a_drop(
    page: Page, node: ScriptedNode, page_errors: list[str]
) -> None:
    page.evaluate("open_client({token: 'tok'}); watch('a'); watch(['b c'])")
    first = node.connection(0)
    assert (first.path, first.query) == ("/ws/a", {"since": "0", "batch": "1", "token": "tok"})
    subscribe = node.frame(first, "subscribe")
    assert (subscribe["path"], subscribe["since"]) == ("b%20c", 0)

    first.send(type="update", event={"path": "a/x", "iteration": 3})
    first.send(type="synced", iteration=3)
    first.send(type="update", event={"path": "b%20c/y", "iteration": 5})
    first.send(type="synced", iteration=5)
    first.send(type="heartbeat", iteration=8)  # both are caught up: both move to 8
    # A batched frame (the client asks for batch=1): each event to the subscriptions covering it.
    first.send(type="updates", events=[{"path": "a/z", "iteration": 9}, {"path": "b%20c/w", "iteration": 10}])
    wait_for_log(page, "cursor", "b%20c", 10)
    first.route.close(code=SERVICE_RESTART)

    second = node.connection(1)
    assert (second.path, second.query) == ("/ws/a", {"since": "9", "batch": "1", "token": "tok"})
    resubscribe = node.frame(second, "subscribe")
    assert (resubscribe["path"], resubscribe["since"]) == ("b%20c", 10)
    second.send(type="synced", iteration=9)
    wait_for_log(page, "synced", "a", 9, False)
    assert entries(page, "event") == [
        ["event", "a", "a/x", 3],
        ["event", "b%20c", "b%20c/y", 5],
        ["event", "a", "a/z", 9],
        ["event", "b%20c", "b%20c/w", 10],
    ]
    page.evaluate("client.close()")
    wait_for_log(page, "status", "closed")
    assert [entry[1] for entry in entries(page, "status")] == [
        "connected",
        "reconnecting",
        "connected",
        "closed",
    ]
    assert page_errors == []


def test_client_holds_a_resumed_catch_up_until_synced_and_rebuilds_on_reset(
    page: Page, node: ScriptedNode, page_errors: list[str]
) -> None:
    page.evaluate("open_client(); watch('a')")
    first = node.connection(0)
    first.send(type="update", event={"path": "a/old", "iteration": 7})
    first.send(type="synced", iteration=7)
    wait_for_log(page, "synced", "a", 7, False)
    first.route.close(code=SERVICE_RESTART)

    # The node lost its history: the cursor 7 is ahead of it, so it replays from 0 and says reset.
    second = node.connection(1)
    assert second.query["since"] == "7"
    page.evaluate("window.log = []")
    second.send(type="update", event={"path": "a/new", "iteration": 2})
    second.send(type="heartbeat", iteration=50)  # during a catch-up: must not move the cursor
    second.send(type="synced", iteration=2, reset=True)
    wait_for_log(page, "synced", "a", 2, True)
    assert log(page) == [
        ["reset", "a"],
        ["event", "a", "a/new", 2],
        ["cursor", "a", 2],
        ["synced", "a", 2, True],
    ]
    second.route.close(code=SERVICE_RESTART)

    third = node.connection(2)
    assert third.query["since"] == "2"
    page.evaluate("window.log = []")
    third.send(type="update", event={"path": "a/next", "iteration": 5})
    third.send(type="synced", iteration=6)
    wait_for_log(page, "synced", "a", 6, False)
    assert [entry for entry in log(page) if entry[0] != "status"] == [
        ["event", "a", "a/next", 5],
        ["cursor", "a", 5],
        ["cursor", "a", 6],
        ["synced", "a", 6, False],
    ]
    assert page_errors == []


def test_client_queues_posts_while_offline_and_sends_unacknowledged_ones_again(
    page: Page, node: ScriptedNode, page_errors: list[str]
) -> None:
    page.evaluate("open_client({token: 'tok'}); watch('a'); send_post('a/1', 'one')")
    first = node.connection(0)
    post = node.frame(first, "post")
    assert {key: post[key] for key in ("path", "value")} == {"path": "a/1", "value": "one"}
    first.route.close(code=SERVICE_RESTART)  # before its ack: the outcome is unknown
    page.evaluate("send_post(['a', 'bytes'], new Uint8Array([0, 255]))")

    second = node.connection(1)
    node.frame(second, "post", 1)
    resent, queued = second.received_of("post")
    assert {key: resent[key] for key in ("path", "value")} == {"path": "a/1", "value": "one"}
    assert {key: queued[key] for key in ("path", "value_b64")} == {"path": "a/bytes", "value_b64": "AP8="}
    second.send(type="ack", ref=queued["ref"], report={"path": "a/bytes", "iteration": 11})
    second.send(type="ack", ref=resent["ref"], report={"path": "a/1", "iteration": 10})
    wait_for_log(page, "ack", "a/1", 10)
    assert entries(page, "ack") == [["ack", "a/bytes", 11], ["ack", "a/1", 10]]

    page.evaluate("send_post('a/private', 'no')")
    refused = node.frame(second, "post", 2)
    second.send(type="error", code="forbidden", message="Not yours.", ref=refused["ref"])
    wait_for_log(page, "rejected", "a/private", "forbidden")

    page.evaluate("send_post('a/late', 'never acknowledged'); client.close()")
    wait_for_log(page, "rejected", "a/late", "closed")
    assert entries(page, "error") == []  # errors of posts go to their promise only
    assert page_errors == []


def test_client_never_gives_an_old_subscriptions_frames_to_its_replacement(
    page: Page, node: ScriptedNode, page_errors: list[str]
) -> None:
    page.evaluate("open_client(); watch('a')")
    first = node.connection(0)
    first.send(type="update", event={"path": "a/x", "iteration": 3})
    first.send(type="synced", iteration=3)
    wait_for_log(page, "synced", "a", 3, False)

    page.evaluate("subscriptions.a(); window.log = []; watch('a')")
    assert node.frame(first, "unsubscribe")["path"] == "a"
    node.frame(first, "ping")
    first.send(type="update", event={"path": "a/late", "iteration": 4})  # in flight for the old one
    first.send(type="heartbeat", iteration=4)
    assert first.received_of("subscribe") == []  # held until the node answers the ping
    first.send(type="pong")
    subscribe = node.frame(first, "subscribe")
    assert (subscribe["path"], subscribe["since"]) == ("a", 0)
    first.send(type="update", event={"path": "a/x", "iteration": 3})
    first.send(type="update", event={"path": "a/late", "iteration": 4})
    first.send(type="synced", iteration=4)
    wait_for_log(page, "synced", "a", 4, False)
    assert entries(page, "event") == [["event", "a", "a/x", 3], ["event", "a", "a/late", 4]]
    assert page_errors == []


def test_client_drops_a_refused_subscription_and_keeps_the_others_in_step(
    page: Page, node: ScriptedNode, page_errors: list[str]
) -> None:
    page.evaluate("open_client(); watch('a'); watch('secret'); watch('b')")
    first = node.connection(0)
    node.frame(first, "subscribe", 1)
    secret, b = first.received_of("subscribe")
    assert (secret["path"], b["path"]) == ("secret", "b")
    first.send(type="synced", iteration=1)
    first.send(type="error", code="forbidden", message="Not yours.", ref=secret["ref"])
    first.send(type="update", event={"path": "b/y", "iteration": 2})
    first.send(type="synced", iteration=2)
    wait_for_log(page, "synced", "b", 2, False)
    assert [entry for entry in log(page) if entry[0] in ("refused", "error", "synced", "event")] == [
        ["synced", "a", 1, False],
        ["refused", "secret", "forbidden"],
        ["error", "forbidden"],
        ["event", "b", "b/y", 2],
        ["synced", "b", 2, False],
    ]
    first.route.close(code=SERVICE_RESTART)
    second = node.connection(1)
    node.frame(second, "subscribe")
    assert [frame["path"] for frame in second.received_of("subscribe")] == ["b"]
    assert page_errors == []


def test_client_drops_a_refused_url_subscription(
    page: Page, node: ScriptedNode, page_errors: list[str]
) -> None:
    page.evaluate("open_client(); watch('private')")
    first = node.connection(0)
    assert first.path == "/ws/private"
    first.send(type="error", code="forbidden", message="Not yours.")  # a connection's errors have no ref
    wait_for_log(page, "refused", "private", "forbidden")
    page.evaluate("watch('public')")
    subscribe = node.frame(first, "subscribe")
    assert subscribe["path"] == "public"
    assert page_errors == []


def test_client_with_posts_only_leaves_the_root_subscription_of_its_url(
    page: Page, node: ScriptedNode, page_errors: list[str]
) -> None:
    page.evaluate("open_client({token: 'tok'}); send_post('a/1', 'one')")
    first = node.connection(0)
    assert (first.path, first.query["since"]) == ("/ws/", "0")
    node.frame(first, "post")
    assert [frame["type"] for frame in first.received][:2] == ["unsubscribe", "ping"]
    assert first.received_of("unsubscribe")[0]["path"] == ""
    page.evaluate("watch('a')")
    first.send(type="update", event={"path": "a/root-catch-up", "iteration": 1})  # before the pong
    first.send(type="pong")
    node.frame(first, "subscribe")
    first.send(type="update", event={"path": "a/1", "iteration": 2})
    first.send(type="synced", iteration=2)
    wait_for_log(page, "synced", "a", 2, False)
    assert entries(page, "event") == [["event", "a", "a/1", 2]]
    assert page_errors == []
