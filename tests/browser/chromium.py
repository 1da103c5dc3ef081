"""How the browser tests run Chromium: Debian's ``chromium`` package driven by Playwright (its own
browser download cannot run here)."""

from __future__ import annotations

from playwright.sync_api import ViewportSize

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
TIMEOUT_MS = 60_000
