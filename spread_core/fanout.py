"""In-process fan-out: who is subscribed to which prefix, ringing them after a commit, and the
propagation report that a write returns.

A ring is only a doorbell ("something changed up to iteration N"): subscribers read the events
themselves from the database by iteration, so a missed ring costs latency, never data.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Protocol

from .paths import canonical_ancestors
from .types import PropagationEntry


class Subscriber(Protocol):
    prefix: str

    def ring(self, iteration: int) -> None: ...


class Hub:
    """Registry of this process's subscribers, keyed by the canonical prefix they watch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_prefix: dict[str, set[Subscriber]] = defaultdict(set)

    def add(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._by_prefix[subscriber.prefix].add(subscriber)

    def discard(self, subscriber: Subscriber) -> None:
        with self._lock:
            subscribers = self._by_prefix.get(subscriber.prefix)
            if subscribers is not None:
                subscribers.discard(subscriber)
                if not subscribers:
                    del self._by_prefix[subscriber.prefix]

    def count(self, prefix: str) -> int:
        with self._lock:
            return len(self._by_prefix.get(prefix, ()))

    def _watching(self, path: str) -> list[Subscriber]:
        with self._lock:
            return [s for p in canonical_ancestors(path) for s in self._by_prefix.get(p, ())]

    def notify(self, path: str, iteration: int) -> None:
        """Ring every subscriber whose prefix covers ``path``, which changed at ``iteration``."""
        for subscriber in self._watching(path):
            subscriber.ring(iteration)

    def report(self, path: str, *, delivered: bool) -> list[PropagationEntry]:
        """Subscribers notified per ancestor of ``path`` (zero everywhere when not delivered)."""
        return [
            {"path": prefix, "subscribers": self.count(prefix) if delivered else 0}
            for prefix in canonical_ancestors(path)
        ]


hub = Hub()
