"""A full disk while a blob is stored: the upload fails cleanly with 507 ``insufficient_storage``,
it is aborted (never served as complete), the topic's previous value stays current, and once the
aborted upload's bytes are dropped, writes succeed again. Twice over:

- the file blob store (the node's default) on a real file system that fills up: a tmpfs of
  ``FULL_DISK_BYTES`` mounted as the node's blob directory (root may mount one; elsewhere the test
  says it cannot run); both passes;
- the database blob store in a SQLite database that cannot grow past ``FULL_DISK_BYTES``
  (``PRAGMA max_page_count``, tests/node_settings_full_disk.py, set on every connection of the
  node): SQLite fails the write with SQLITE_FULL, "database or disk is full", the very error a
  full file system gives; SQLite pass only.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from django.db import OperationalError

from spread_api.errors import describe
from spread_core.testing import LiveNode
from tests.node_settings_full_disk import FULL_DISK_BYTES, SQLITE_PAGE_SIZE
from tests.nodes import Nodes

from .database import assert_error, assert_log_intact, query, sqlite_file

TIMEOUT = httpx.Timeout(60.0)
PREVIOUS_VALUE = b"the previous value, small and complete"
#: Small writes that must succeed after the failed upload.
SMALL_WRITES = 20


@pytest.fixture
def small_file_system(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of ``FULL_DISK_BYTES`` mounted in the test's directory, unmounted after it."""
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FULL_DISK_BYTES}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.e2e
def test_an_upload_that_fills_the_blob_file_system_is_507_and_the_previous_value_stays(
    nodes: Nodes, auth: dict[str, str], small_file_system: Path
) -> None:
    node = nodes.start("full-fs", SPREAD_BLOB_ROOT=str(small_file_system))
    fill_the_disk_and_recover(node, auth)
    assert not [path for path in small_file_system.glob("*/*") if path.stat().st_size > FULL_DISK_BYTES // 3]


@pytest.mark.e2e
@pytest.mark.usefixtures("sqlite_pass")
def test_an_upload_that_fills_the_database_is_507_and_the_previous_value_stays(
    nodes: Nodes, auth: dict[str, str]
) -> None:
    node = nodes.start("full-disk", DJANGO_SETTINGS_MODULE="tests.node_settings_full_disk")
    assert query(node, "PRAGMA page_size")[0][0] == SQLITE_PAGE_SIZE
    fill_the_disk_and_recover(node, auth)
    assert os.path.getsize(sqlite_file(node)) <= FULL_DISK_BYTES


def fill_the_disk_and_recover(node: LiveNode, auth: dict[str, str]) -> None:
    """Twice an upload of twice the room is refused with 507; the previous value stays; then a
    third of the room fits (the aborted bytes gave their space back) and small writes succeed."""
    path = "/raw/disk/value"
    rng = random.Random(7)
    with httpx.Client(base_url=node.url, timeout=TIMEOUT) as client:
        written = client.post(path, content=PREVIOUS_VALUE, headers=auth)
        assert written.status_code == 200, written.text
        previous_etag = f'"{written.json()["id"]}"'

        def assert_previous_is_current() -> None:
            current = client.get(path)
            assert current.status_code == 200, current.text
            assert current.content == PREVIOUS_VALUE
            assert current.headers["etag"] == previous_etag
            assert current.headers["content-length"] == str(len(PREVIOUS_VALUE))

        # Twice: the first failure must leave the store able to fail the same way again.
        for _ in range(2):
            too_big = rng.randbytes(2 * FULL_DISK_BYTES)
            refused = client.post(path, content=too_big, headers=auth)
            assert_error(refused, 507, "insufficient_storage")
            assert_previous_is_current()

        history = client.get("/history/disk/value").json()
        assert history["current"] == previous_etag.strip('"')
        statuses = [event["status"] for event in history["events"]]
        assert statuses == ["current", "aborted", "aborted"], statuses
        assert all(not event["complete"] for event in history["events"][1:])

        # The aborted uploads' bytes gave their space back: a value of a third of the whole
        # room fits, which it would not if they still took the space.
        third = rng.randbytes(FULL_DISK_BYTES // 3)
        fits = client.post("/raw/disk/third", content=third, headers=auth)
        assert fits.status_code == 200, fits.text
        assert client.get("/raw/disk/third").content == third
        for number in range(SMALL_WRITES):
            small = client.post(f"/raw/disk/small/{number}", content=f"small {number}".encode(), headers=auth)
            assert small.status_code == 200, small.text
            assert client.get(f"/raw/disk/small/{number}").content == f"small {number}".encode()
        assert_previous_is_current()
    assert_log_intact(node)


def test_a_full_postgresql_disk_is_507_too() -> None:
    """PostgreSQL's ``disk_full`` (SQLSTATE 53100) cannot be provoked here without a small file
    system of its own: its driver error is raised as Django wraps it (``raise ... from``)."""
    try:
        try:
            raise psycopg.errors.DiskFull("could not extend file: No space left on device")
        except psycopg.Error as exc:
            raise OperationalError(str(exc)) from exc
    except OperationalError as wrapped:
        status, body, headers = describe(wrapped)
    assert (status, body["error"]) == (507, "insufficient_storage")
    assert "Retry-After" not in headers
