"""Fixtures of the browser tests: Chromium, one page per test, and the page's uncaught errors."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.services import service_missing

from .chromium import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, VIEWPORT

expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        service_missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page_errors() -> list[str]:
    """Uncaught exceptions of the page's scripts."""
    return []


@pytest.fixture
def page(browser: Browser, page_errors: list[str]) -> Iterator[Page]:
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    yield page
    page.close()
