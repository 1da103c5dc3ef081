"""The history admin in Chromium: an operator logs in, finds topics by prefix, reads a timeline,
restores a version after confirming, and previews then confirms a subtree rollback. Screenshots
of each page are checked; with SPREAD_SCREENSHOTS_DIR set they are also saved there (that is how
docs/img/ is made)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from spread_core.testing import LiveNode

from .chromium import VIEWPORT
from .images import png_size, share_of_near_white

OPERATOR, PASSWORD = "operator", "a long test password"
MIN_SCREENSHOT_BYTES = 20_000


def shoot(page: Page, tmp_path: Path, name: str) -> None:
    """Screenshot the page; check it is a full, non-blank page; keep it for the docs if asked."""
    screenshot = page.screenshot(path=tmp_path / f"{name}.png", full_page=False)
    assert png_size(screenshot) == (VIEWPORT["width"], VIEWPORT["height"])
    assert len(screenshot) > MIN_SCREENSHOT_BYTES
    assert share_of_near_white(screenshot) < 0.97  # something is drawn
    target = os.environ.get("SPREAD_SCREENSHOTS_DIR")
    if target:
        (Path(target) / f"admin-{name}.png").write_bytes(screenshot)


def write(
    node: LiveNode,
    token: str,
    path: str,
    value: str,
    content_type: str = "text/plain",
    date: int | None = None,
) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    if date is not None:
        headers["X-Spread-Etag"] = str(date)
    response = httpx.post(f"{node.url}/raw/{path}", content=value.encode(), headers=headers)
    response.raise_for_status()
    return int(response.json()["iteration"])


def test_an_operator_restores_a_version_and_rolls_a_subtree_back_in_the_browser(
    node: LiveNode, token: str, page: Page, page_errors: list[str], tmp_path: Path
) -> None:
    node.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_superuser({OPERATOR!r}, '', {PASSWORD!r})",
    )
    good = write(node, token, "plant-3/config", '{"mode": "eco", "limit": 40}', "application/json")
    write(node, token, "plant-3/config", '{"mode": "turbo", "limit": 90}', "application/json")
    write(node, token, "plant-3/temp", "21.5")
    write(node, token, "plant-3/temp", "22.1")
    write(node, token, "plant-3/alarm", "created later")

    page.goto(f"{node.url}/admin/login/?next=/admin/spread_history/topichistory/")
    page.fill("#id_username", OPERATOR)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    expect(page.locator("#tree")).to_contain_text("plant-3/")
    page.fill("input[name=q]", "plant-3")
    page.press("input[name=q]", "Enter")
    expect(page.locator("#tree tbody tr")).to_have_count(3)
    expect(page.locator("#tree")).to_contain_text("config")
    expect(page.locator(".breadcrumbs")).to_contain_text("plant-3")
    shoot(page, tmp_path, "topics")

    page.locator("#tree tbody tr", has_text="config").locator("text=history").click()
    timeline = page.locator("#timeline")
    expect(timeline.locator("tbody tr")).to_have_count(2)
    expect(timeline.locator("tbody tr").nth(0)).to_contain_text("superseded")
    expect(timeline.locator("tbody tr").nth(1)).to_contain_text("current")
    expect(timeline).to_contain_text('"mode": "turbo"')
    page.locator("input[name=a]").nth(0).check()
    page.locator("input[name=b]").nth(1).check()
    page.click("text=Compare a and b")
    expect(page.locator(".spread-diff")).to_contain_text('-  "mode": "eco"')
    shoot(page, tmp_path, "timeline")

    page.locator("#timeline tbody tr").nth(0).locator("text=restore this version").click()
    expect(page.locator("#content-main")).to_contain_text(f"iteration {good}")
    shoot(page, tmp_path, "restore")
    page.click("text=Yes, restore this version")
    expect(page.locator(".messagelist")).to_contain_text("restored to the value of iteration")
    assert httpx.get(f"{node.url}/raw/plant-3/config").json() == {"mode": "eco", "limit": 40}

    page.goto(f"{node.url}/admin/spread_history/topichistory/rollback/?prefix=plant-3&to={good}")
    expect(page.locator("#content-main h2")).to_have_text("2 topic(s) will change")
    expect(page.locator("#plan")).to_contain_text("deleted (tombstone)")
    shoot(page, tmp_path, "rollback")
    page.click("text=Yes, roll back these 2 topic(s)")
    expect(page.locator(".messagelist")).to_contain_text("2 topic(s) changed")
    assert httpx.get(f"{node.url}/raw/plant-3/alarm").status_code == 404
    assert httpx.get(f"{node.url}/raw/plant-3/temp").status_code == 404  # it had no value then

    # A write that loses a race shows among the conflict losers; activity and time travel.
    write(node, token, "plant-3/config", '{"mode": "stale"}', "application/json", date=1_000_000)
    page.goto(f"{node.url}/admin/spread_history/topichistory/conflicts/")
    expect(page.locator("#conflicts tbody tr")).to_have_count(1)
    expect(page.locator("#conflicts")).to_contain_text("too_late")
    shoot(page, tmp_path, "conflicts")
    page.goto(f"{node.url}/admin/spread_history/topichistory/activity/?prefix=plant-3")
    expect(page.locator("#activity-total")).to_have_text("9 write(s) under plant-3")
    expect(page.locator("svg.spread-activity rect").first).to_be_visible()
    shoot(page, tmp_path, "activity")
    page.goto(f"{node.url}/admin/spread_history/topichistory/travel/?prefix=plant-3&at={good}")
    expect(page.locator("#travel tbody tr")).to_have_count(1)
    page.click("#next")
    expect(page.locator("#at")).to_have_text(f"iteration {good + 1}")
    expect(page.locator("#travel")).to_contain_text('"turbo"')
    shoot(page, tmp_path, "travel")
    assert page_errors == []
