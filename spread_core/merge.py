"""The last-writer-wins merge rule, as pure functions on frozen values (no ORM, no settings).

An event is identified by (path, date, origin); its id is a hash of that triple, so the same event
arriving twice has the same id. A topic's current value is the event with the greatest
``(date, origin)`` pair: compare ``date`` (integer microseconds) first, then ``origin`` as UTF-8
bytes. Tombstones (deletions) follow the same rule. Events that are not greater than the current one
are kept in history as ``too_late``. The result does not depend on arrival order or duplicates.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

EVENT_ID_BYTES = 16


class Outcome(enum.StrEnum):
    """What applying an event did."""

    OK = "ok"  # stored and now the topic's current value
    TOO_LATE = "too_late"  # stored in history, the current value is greater
    EXISTING = "existing"  # already stored: nothing changed


@dataclass(frozen=True, order=False)
class EventKey:
    """The (date, origin) pair that orders concurrent writes to one topic."""

    date: int
    origin: str

    def sort_key(self) -> tuple[int, bytes]:
        return (self.date, self.origin.encode("utf-8"))

    def __lt__(self, other: EventKey) -> bool:
        return self.sort_key() < other.sort_key()

    def __gt__(self, other: EventKey) -> bool:
        return self.sort_key() > other.sort_key()


def event_id(path: str, date: int, origin: str) -> str:
    """Deterministic id of the event (canonical path, date, origin), 32 hex digits."""
    material = f"{path}\x00{date}\x00{origin}".encode()
    return hashlib.sha256(material).hexdigest()[: EVENT_ID_BYTES * 2]


def decide(current: EventKey | None, incoming: EventKey) -> Outcome:
    """Outcome of applying ``incoming`` to a topic whose current event is ``current``.

    Equal keys mean the same event (its id is the same), reported as ``EXISTING``.
    """
    if current is None or incoming > current:
        return Outcome.OK
    if incoming.sort_key() == current.sort_key():
        return Outcome.EXISTING
    return Outcome.TOO_LATE


def winner(keys: Iterable[EventKey]) -> EventKey | None:
    """The greatest key of a set of events, or None for an empty set."""
    best: EventKey | None = None
    for key in keys:
        if best is None or key > best:
            best = key
    return best
