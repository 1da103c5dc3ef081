"""The value cache (spread_core.cache): hits without queries, own writes stored through, writes of
other processes never served stale, fills that lose a race dropped, bounded by bytes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from spread_core import api, reader
from spread_core.cache import ENTRY_OVERHEAD, MISS, value_cache
from spread_core.models import Counter, Topic
from spread_core.paths import TopicPath

from .blob_stores import spread_with

pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parent.parent
DATE = 1_764_130_000_000_000


@pytest.fixture(autouse=True)
def empty_cache() -> Iterator[None]:
    value_cache.clear()
    yield
    value_cache.clear()


def database_url() -> str:
    """The URL of this run's test database, for another process to write into it."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    user, host, port = settings["USER"] or "postgres", settings["HOST"], settings["PORT"] or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


def post_from_another_process(path: str, value: str, date: int) -> None:
    """``api.post`` in a separate OS process writing to the same database."""
    code = (
        "import django; django.setup(); from spread_core import api; "
        f"api.post({path!r}, {value!r}, origin='other', date={date})"
    )
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "tests.settings"}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120)


def test_a_second_read_is_a_hit_that_needs_no_query_on_sqlite() -> None:
    api.post("cache/hit", "one", date=DATE)
    value_cache.clear()
    assert api.get("cache/hit").value == b"one"  # miss: filled from the store
    with CaptureQueriesContext(connection) as queries:
        assert api.get("cache/hit").value == b"one"
    assert value_cache.stats()["hits"] >= 1
    if connection.vendor == "sqlite":
        assert len(queries) == 0  # validated on the private probe connection, no Django query
    else:
        assert len(queries) == 1  # one one-row read of the counter


def test_a_write_of_this_process_is_stored_through_and_read_without_a_fill() -> None:
    api.post("cache/own", "first", date=DATE)
    api.post("cache/own", "second", date=DATE + 1)
    misses = value_cache.stats()["misses"]
    assert api.get("cache/own").value == b"second"
    assert value_cache.stats()["misses"] == misses  # served by what the write stored
    assert value_cache.known == Counter.objects.get().value


def test_a_write_acknowledged_by_another_process_is_never_served_stale() -> None:
    api.post("cache/shared", "mine", date=DATE)
    assert api.get("cache/shared").value == b"mine"  # cached here
    post_from_another_process("cache/shared", "theirs", DATE + 1)
    assert api.get("cache/shared").value == b"theirs"
    post_from_another_process("cache/new", "created elsewhere", DATE)
    assert api.get("cache/new").value == b"created elsewhere"  # a cached miss is revalidated too


async def reads_on_a_loop(path: str, count: int) -> list[object]:
    """``count`` concurrent cache reads on one event loop (as the lean path does them)."""
    topic = TopicPath.from_canonical(path)
    return list(await asyncio.gather(*(reader.acached_current(topic) for _ in range(count))))


@pytest.mark.parametrize("shared", [True, False], ids=["shared-validation", "own-validation"])
def test_reads_on_an_event_loop_never_serve_what_another_process_replaced(shared: bool) -> None:
    with override_settings(SPREAD=spread_with(CACHE_SHARED_VALIDATION=shared)):
        api.post("cache/loop", "mine", date=DATE)
        runs = value_cache._shared_validation.runs
        assert {event.value for event in asyncio.run(reads_on_a_loop("cache/loop", 32))} == {b"mine"}
        post_from_another_process("cache/loop", "theirs", DATE + 1)
        # Validated after they began: the replaced entry is gone (the lean path then reads the store).
        assert asyncio.run(reads_on_a_loop("cache/loop", 32)) == [MISS] * 32
        assert api.get("cache/loop").value == b"theirs"  # filled again
        assert {event.value for event in asyncio.run(reads_on_a_loop("cache/loop", 32))} == {b"theirs"}
        shared_runs = value_cache._shared_validation.runs - runs
    if connection.vendor == "sqlite" or not shared:
        assert shared_runs == 0  # SQLite validates on the loop itself; or each read on its own
    else:
        assert 3 <= shared_runs <= 6  # 96 reads, 32 at a time: about one query per group


def test_a_tombstone_and_a_missing_topic_are_cached_as_no_value() -> None:
    assert api.get("cache/never") is None
    api.post("cache/gone", "x", date=DATE)
    api.delete("cache/gone", date=DATE + 1)
    assert api.get("cache/gone") is None
    with CaptureQueriesContext(connection) as queries:
        assert api.get("cache/never") is None
        assert api.get("cache/gone") is None
    assert len(queries) == (0 if connection.vendor == "sqlite" else 2)


def test_a_fill_that_started_before_a_write_is_dropped() -> None:
    api.post("cache/race", "old", date=DATE)
    value_cache.clear()
    path = TopicPath.coerce("cache/race")
    stripe = value_cache.stripe_version(path.canonical)
    stale = reader._stored_current(path)  # a read that began before the write below
    api.post("cache/race", "new", date=DATE + 1)
    value_cache.fill(path.canonical, stale, 1, stripe)
    assert api.get("cache/race").value == b"new"


def test_a_counter_that_went_backwards_clears_the_cache() -> None:
    api.post("cache/reset", "before", date=DATE)
    assert api.get("cache/reset").value == b"before"
    # The database is reset behind this process's back (a restore): the counter goes back.
    Topic.objects.all().delete()
    Counter.objects.update(value=0)
    assert api.get("cache/reset") is None


def test_inside_a_transaction_reads_bypass_the_cache_and_rolled_back_writes_leave_nothing() -> None:
    class Rollback(Exception):
        pass

    api.post("cache/txn", "committed", date=DATE)
    with pytest.raises(Rollback), api.transaction():
        api.post("cache/txn", "rolled back", date=DATE + 1)
        assert api.get("cache/txn").value == b"rolled back"  # the transaction sees its own write
        raise Rollback()
    assert api.get("cache/txn").value == b"committed"


def test_entries_are_bounded_by_bytes_least_recently_used_first_out() -> None:
    value = "v" * 1000
    limit = 3 * (ENTRY_OVERHEAD + len(value))
    with override_settings(SPREAD=spread_with(CACHE_MAX_BYTES=limit)):
        for name in "abcd":
            api.post(f"cache/lru/{name}", value, date=DATE)
        assert value_cache.stats()["bytes"] <= limit
        assert value_cache.stats()["entries"] == 3
        misses = value_cache.stats()["misses"]
        api.get("cache/lru/a")  # the oldest went out: a miss
        assert value_cache.stats()["misses"] == misses + 1


def test_with_the_cache_off_every_read_goes_to_the_store() -> None:
    with override_settings(SPREAD=spread_with(CACHE_MAX_BYTES=0)):
        api.post("cache/off", "x", date=DATE)
        with CaptureQueriesContext(connection) as queries:
            assert api.get("cache/off").value == b"x"
        assert len(queries) >= 1
        assert value_cache.stats()["entries"] == 0
