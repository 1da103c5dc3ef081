"""The demo page in real Chromium (Playwright) against a real node: live tree, editor, reconnects."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from spread_core.testing import LiveNode

from ..nodes import MANAGE_PY
from .chromium import TIMEOUT_MS, VIEWPORT
from .images import png_size, share_of_color

pytestmark = pytest.mark.e2e

# A blank 1280x800 page compresses to about 5 kB; the demo page with a tree is well above this.
MIN_SCREENSHOT_BYTES = 20_000
CONNECTED_GREEN = (0x1B, 0x87, 0x3F)  # --ok in demo.html
RECONNECTING_ORANGE = (0xC7, 0x70, 0x0B)  # --warn in demo.html


def open_demo(page: Page, node: LiveNode, prefix: str = "") -> None:
    page.goto(f"{node.url}/demo/" + (f"?prefix={prefix}" if prefix else ""))
    expect(page.get_by_test_id("status")).to_have_text("connected", timeout=TIMEOUT_MS)


def shown_value(page: Page, path: str) -> Locator:
    """The value shown in the tree for the topic at canonical ``path``."""
    return page.locator(f'[data-testid="value"][data-path="{path}"]')


def post_from_editor(page: Page, path: str, value: str) -> Locator:
    """Post through the page's editor (``path`` as a person types it: segments split on "/");
    returns the editor's log line of that post."""
    page.get_by_test_id("post-path").fill(path)
    page.get_by_test_id("post-value").fill(value)
    page.get_by_test_id("post-button").click()
    canonical = "/".join(quote(segment, safe="") for segment in path.split("/"))
    return page.locator(f'[data-testid="post-entry"][data-path="{canonical}"]').first


def post_over_http(node: LiveNode, auth: dict[str, str], path: str, value: str) -> int:
    response = httpx.post(f"{node.url}/raw/{path}", content=value, headers=auth)
    assert response.status_code == 200, response.text
    return int(response.json()["iteration"])


def manage(node: LiveNode, *args: str) -> None:
    """Run a management command on the node's database (while the node itself is down)."""
    subprocess.run([sys.executable, str(MANAGE_PY), *args], env=node.env, check=True, capture_output=True)


def write_to_database(node: LiveNode, path: str, value: str) -> None:
    manage(node, "shell", "-c", f"from spread_core import api; api.post({path!r}, {value!r})")


def test_demo_page_shows_writes_live_and_stores_posts_from_its_editor(
    node: LiveNode, auth: dict[str, str], page: Page, page_errors: list[str], tmp_path: Path
) -> None:
    post_over_http(node, auth, "demo/before", "written before the page loaded")
    open_demo(page, node)
    expect(shown_value(page, "demo/before")).to_have_text("written before the page loaded")

    iteration = post_over_http(node, auth, "demo/sensors/t1", "21.5")
    expect(shown_value(page, "demo/sensors/t1")).to_have_text("21.5")
    expect(page.get_by_test_id("iteration")).to_have_text(str(iteration))

    entry = post_from_editor(page, "demo/from page", "hello from the page")
    expect(entry).to_have_attribute("data-state", "ok")
    stored = httpx.get(f"{node.url}/raw/demo/from%20page")
    assert stored.status_code == 200
    assert stored.text == "hello from the page"
    assert stored.headers["From"] == page.get_by_test_id("uid").inner_text()  # the page's own token
    expect(shown_value(page, "demo/from%20page")).to_have_text("hello from the page")

    screenshot = page.screenshot(path=tmp_path / "demo.png")
    assert (tmp_path / "demo.png").read_bytes() == screenshot
    assert png_size(screenshot) == (VIEWPORT["width"], VIEWPORT["height"])
    assert len(screenshot) > MIN_SCREENSHOT_BYTES
    assert share_of_color(page.get_by_test_id("status").screenshot(), CONNECTED_GREEN) > 0.5
    assert page_errors == []


def test_demo_page_watches_only_the_chosen_prefix(
    node: LiveNode, auth: dict[str, str], page: Page, page_errors: list[str]
) -> None:
    post_over_http(node, auth, "demo/a", "under demo")
    post_over_http(node, auth, "other/b", "under other")
    open_demo(page, node, prefix="demo")
    expect(shown_value(page, "demo/a")).to_have_text("under demo")
    expect(page.get_by_test_id("watching")).to_have_text("demo")
    expect(shown_value(page, "other/b")).to_have_count(0)

    page.get_by_test_id("prefix").fill("other")
    page.get_by_test_id("watch").click()
    expect(shown_value(page, "other/b")).to_have_text("under other")
    expect(shown_value(page, "demo/a")).to_have_count(0)

    post_over_http(node, auth, "demo/c", "not watched")
    post_over_http(node, auth, "other/d", "watched")
    expect(shown_value(page, "other/d")).to_have_text("watched")
    expect(shown_value(page, "demo/c")).to_have_count(0)
    assert page_errors == []


def test_demo_page_reconnects_after_a_restart_catches_up_and_sends_queued_posts(
    node: LiveNode, auth: dict[str, str], page: Page, page_errors: list[str], tmp_path: Path
) -> None:
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    open_demo(page, node)
    cursor = post_over_http(node, auth, "demo/first", "before the restart")
    expect(shown_value(page, "demo/first")).to_have_text("before the restart")
    expect(page.get_by_test_id("iteration")).to_have_text(str(cursor))

    node.stop()
    expect(page.get_by_test_id("status")).to_have_text("reconnecting")
    badge = page.get_by_test_id("status").screenshot(path=tmp_path / "reconnecting.png")
    assert share_of_color(badge, RECONNECTING_ORANGE) > 0.5
    queued = post_from_editor(page, "demo/offline", "posted while disconnected")
    expect(queued).to_have_attribute("data-state", "queued")
    write_to_database(node, "demo/while-down", "written while the page was away")

    node.start()
    expect(page.get_by_test_id("status")).to_have_text("connected", timeout=TIMEOUT_MS)
    expect(shown_value(page, "demo/while-down")).to_have_text("written while the page was away")
    expect(queued).to_have_attribute("data-state", "ok")
    assert httpx.get(f"{node.url}/raw/demo/offline").text == "posted while disconnected"
    expect(shown_value(page, "demo/offline")).to_have_text("posted while disconnected")
    expect(shown_value(page, "demo/first")).to_have_text("before the restart")

    iteration = post_over_http(node, auth, "demo/after", "live again")
    expect(shown_value(page, "demo/after")).to_have_text("live again")
    expect(page.get_by_test_id("iteration")).to_have_text(str(iteration))

    # The first socket started from 0; every reconnect resumed from the last iteration seen.
    sinces = [parse_qs(urlsplit(url).query)["since"] for url in sockets]
    assert len(sinces) >= 2
    assert sinces == [["0"]] + [[str(cursor)]] * (len(sinces) - 1)
    assert page_errors == []


def test_demo_page_rebuilds_its_tree_when_the_node_cannot_resume_its_cursor(
    node: LiveNode,
    auth: dict[str, str],
    page: Page,
    page_errors: list[str],
    fresh_database_url: Callable[[str], str],
) -> None:
    open_demo(page, node)
    for name in ("one", "two", "three"):
        post_over_http(node, auth, f"old/{name}", name)
    expect(shown_value(page, "old/three")).to_have_text("three")

    # The node comes back on a restored (here: new) database whose head is behind the page's cursor.
    node.stop()
    node.env["DATABASE_URL"] = fresh_database_url("restored")
    manage(node, "migrate", "--verbosity", "0")
    write_to_database(node, "new/only", "from the restored database")
    node.start()

    expect(shown_value(page, "new/only")).to_have_text("from the restored database")
    expect(page.locator('[data-testid="value"][data-path^="old/"]')).to_have_count(0)
    expect(page.get_by_test_id("iteration")).to_have_text("1")
    expect(page.get_by_test_id("status")).to_have_text("connected")
    assert page_errors == []
