"""The value cache of a node process: the current event of recently read topics, in memory.

Each entry holds a topic's current event (inline value included; a blob as metadata only, its
bytes stay in the store) or the fact that the topic has no value, with the iteration at which the
topic last changed. Entries are bounded by bytes (``SPREAD["CACHE_MAX_BYTES"]``, least recently
used first out; 0 switches the cache off).

The coherence rule: a read that starts after any process of the node acknowledged a write returns
that write or a newer one. Every read validates the cache first (``validate``): it compares the
node's iteration counter (every commit that changes a topic advances it, in the same transaction)
with the counter value up to which this cache knows every change (``known``). When the counter
moved, the topics changed since are evicted (one indexed query on ``Topic.changed``) and ``known``
advances. Writes of this process update the cache themselves, after their commit and before
they are answered (``note_recorded``), and advance ``known`` over their own iterations when they
follow it without a gap, so a process's own writes do not evict what they just wrote. A counter
that went backwards (the database was reset or restored) clears the cache.

Validating costs one one-row read: on SQLite, ``PRAGMA data_version`` on a private read-only
connection of the thread (a few µs, no query while nothing was committed); elsewhere the counter
row through the thread's Django connection. Fills from the database race with writes: a fill
stores its entry only if nothing changed the entry's stripe since the fill began.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, connection, connections

from .conf import spread_settings
from .models import ITERATION_COUNTER, Counter, Topic
from .shared_runs import SharedRuns
from .threads import kept_threads

if TYPE_CHECKING:
    from .models import Event

#: Bytes an entry costs beyond its inline value (the event object, its topic, the dict slot).
ENTRY_OVERHEAD = 1024
#: More changed topics than this since the last validation: clear the cache instead of a long query.
MAX_EVICTIONS = 1000
STRIPES = 256

COUNTER_SQL = f"SELECT value FROM {Counter._meta.db_table} WHERE name = %s"
CHANGED_SQL = f"SELECT path FROM {Topic._meta.db_table} WHERE changed > %s ORDER BY changed LIMIT %s"


class Miss:
    """What a lookup answers when the cache cannot tell (``MISS``)."""


MISS = Miss()


@dataclass(frozen=True)
class Entry:
    """A topic's current event (None: no value) as of iteration ``changed``."""

    event: Event | None
    changed: int
    size: int


class _SqliteProbe:
    """A private connection of one thread to the SQLite file, used only to read (never holds a
    read transaction between calls: every statement is fetched to its end)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=True, timeout=30)
        self.version: int | None = None

    def data_version(self) -> int:
        return int(self.db.execute("PRAGMA data_version").fetchall()[0][0])

    def counter(self) -> int:
        rows = self.db.execute(COUNTER_SQL.replace("%s", "?"), (ITERATION_COUNTER,)).fetchall()
        return int(rows[0][0]) if rows else 0

    def changed_since(self, iteration: int) -> list[str]:
        sql = CHANGED_SQL.replace("%s", "?")
        return [row[0] for row in self.db.execute(sql, (iteration, MAX_EVICTIONS + 1)).fetchall()]


def _django_counter() -> int:
    with connection.cursor() as cursor:
        cursor.execute(COUNTER_SQL, [ITERATION_COUNTER])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _django_changed_since(iteration: int) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(CHANGED_SQL, [iteration, MAX_EVICTIONS + 1])
        return [row[0] for row in cursor.fetchall()]


class ValueCache:
    """The process's cache (``value_cache``); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0
        self._stripes = [0] * STRIPES
        #: Every change up to this iteration is reflected here (entries evicted or updated).
        self.known = 0
        #: Iterations of this process's commits above ``known``, not yet folded into it.
        self._local: set[int] = set()
        self._probes = threading.local()
        self._shared_validation = SharedRuns(self._validate_in_thread)
        self.hits = 0
        self.misses = 0

    # -- settings ---------------------------------------------------------------------------

    @staticmethod
    def enabled() -> bool:
        return bool(spread_settings.CACHE_MAX_BYTES)

    # -- validation -------------------------------------------------------------------------

    def _probe(self) -> _SqliteProbe | None:
        """This thread's SQLite probe, or None where validating needs Django (another database,
        or an in-memory one, which is private to its Django connection). Decided again only
        when the database's settings entry or name changes (the test runner renames it)."""
        config = connections.settings[DEFAULT_DB_ALIAS]  # no connection lookup per read
        key = (id(config), config["NAME"])
        if getattr(self._probes, "key", None) == key:
            probe: _SqliteProbe | None = self._probes.probe
            return probe
        # SQLite's wrapper (is_in_memory_db is not on the base class)
        database: Any = connections[DEFAULT_DB_ALIAS]
        probe = None
        if database.vendor == "sqlite" and not database.is_in_memory_db():
            probe = _SqliteProbe(str(database.settings_dict["NAME"]))
        self._probes.probe, self._probes.key = probe, key
        return probe

    def validate(self, *, on_event_loop: bool = False) -> bool:
        """Make every entry at least as new as the store's state now (see the module docstring).
        Sync; on SQLite it may run on the event loop (a read of the local file, no Django). With
        ``on_event_loop``, validate only where that needs no Django database call; answers
        whether it validated."""
        probe = self._probe()
        if probe is not None:
            version = probe.data_version()
            if version == probe.version:
                return True  # nothing was committed since this thread's last validation
            counter = probe.counter()
            changed_since = probe.changed_since
        elif on_event_loop:
            return False
        else:
            version = None
            counter = _django_counter()
            changed_since = _django_changed_since
        self._catch_up(counter, changed_since)
        if probe is not None:
            probe.version = version
        return True

    async def avalidate(self) -> None:
        """``validate`` for a coroutine: on the event loop where that needs no Django (SQLite),
        else in a thread that keeps its connection; with ``CACHE_SHARED_VALIDATION``, concurrent
        reads of the loop share that query (each still waits for one that began after it)."""
        if self.validate(on_event_loop=True):
            return
        if spread_settings.CACHE_SHARED_VALIDATION:
            await self._shared_validation()
        else:
            await self._validate_in_thread()

    async def _validate_in_thread(self) -> None:
        await kept_threads.run(self.validate)

    def _catch_up(self, counter: int, changed_since: Any) -> None:
        with self._lock:
            known = self.known
        if counter == known:
            return
        if counter < known:
            self.clear()  # the database went back (reset, restored): nothing here can be trusted
            return
        paths = changed_since(known)  # outside the lock: a query
        with self._lock:
            if len(paths) > MAX_EVICTIONS:
                self._clear_locked()
            else:
                for path in paths:
                    self._evict_locked(path)
            if counter > self.known:
                self.known = counter
                self._local = {i for i in self._local if i > counter}
                self._fold_locked()

    # -- entries ----------------------------------------------------------------------------

    @staticmethod
    def _stripe(path: str) -> int:
        return hash(path) % STRIPES

    def stripe_version(self, path: str) -> int:
        """Read before a fill; pass to ``fill`` (the fill is dropped if the stripe changed)."""
        return self._stripes[self._stripe(path)]

    def lookup(self, path: str) -> Entry | None:
        """The entry of ``path`` (call ``validate`` first), or None on a miss."""
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(path)
            self.hits += 1
            return entry

    def fill(self, path: str, event: Event | None, changed: int, stripe_version: int) -> None:
        """Store what a read found in the database, unless a write or an eviction touched the
        stripe of ``path`` since ``stripe_version`` was taken (the read may be older)."""
        if not self.enabled() or not _cacheable(event):
            return
        with self._lock:
            if self._stripes[self._stripe(path)] != stripe_version:
                return
            existing = self._entries.get(path)
            if existing is None or existing.changed < changed:
                self._put_locked(path, Entry(event, changed, _entry_size(event)))

    def note_committed(self, path: str | None, event: Event | None, changed: int) -> None:
        """A commit of this process took iteration ``changed``: when it changed the current value
        of ``path`` (``event``: the new current one, None for no value), store it; fold the
        iteration into ``known`` when it follows without a gap. Called after the commit, before
        the write is answered."""
        if not self.enabled():
            return
        with self._lock:
            if changed <= self.known:
                # A validation already went past this iteration: a later write of another process
                # may have replaced it, so do not store it (that validation evicted the path).
                if path is not None:
                    self._evict_locked(path)
                return
            if path is not None:
                self._stripes[self._stripe(path)] += 1
                existing = self._entries.get(path)
                if existing is None or existing.changed < changed:
                    if _cacheable(event):
                        self._put_locked(path, Entry(event, changed, _entry_size(event)))
                    else:
                        self._evict_locked(path)
            self._local.add(changed)
            self._fold_locked()

    def clear(self) -> None:
        with self._lock:
            self._clear_locked()
            self.known = 0
            self._local.clear()
        self._probes = threading.local()

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self._bytes,
                "known": self.known,
                "hits": self.hits,
                "misses": self.misses,
            }

    # -- under the lock ---------------------------------------------------------------------

    def _fold_locked(self) -> None:
        while self.known + 1 in self._local:
            self.known += 1
            self._local.discard(self.known)

    def _put_locked(self, path: str, entry: Entry) -> None:
        previous = self._entries.pop(path, None)
        if previous is not None:
            self._bytes -= previous.size
        self._entries[path] = entry
        self._bytes += entry.size
        limit = int(spread_settings.CACHE_MAX_BYTES)
        while self._bytes > limit and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.size

    def _evict_locked(self, path: str) -> None:
        self._stripes[self._stripe(path)] += 1
        entry = self._entries.pop(path, None)
        if entry is not None:
            self._bytes -= entry.size

    def _clear_locked(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._stripes = [version + 1 for version in self._stripes]


def _cacheable(event: Event | None) -> bool:
    """No value, a complete inline value or a complete blob's metadata; never an upload in
    progress (its lease must be checked against the store at each read)."""
    return event is None or (event.complete and not event.aborted)


def _entry_size(event: Event | None) -> int:
    if event is None or event.is_blob or event.value is None:
        return ENTRY_OVERHEAD
    return ENTRY_OVERHEAD + len(event.value)


value_cache = ValueCache()
