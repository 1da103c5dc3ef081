"""In-process subscriptions: the current value of every topic under a prefix changed after
``since``, then every change as it is committed, in increasing iteration order.

A subscription registers with the hub BEFORE it reads the catch-up, and always reads from the
database by iteration, so a write racing with the subscribe is delivered exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from asgiref.sync import iscoroutinefunction
from channels.db import database_sync_to_async

from . import feed_reads
from .conf import spread_settings
from .fanout import hub
from .iteration import current_iteration
from .models import Change, Event, Topic
from .paths import TopicPath
from .threads import delivery_threads
from .types import EventJSON

logger = logging.getLogger(__name__)

PULL_BATCH = 500

PathLike = TopicPath | str | Sequence[str]

Callback = Callable[[EventJSON], Any]


class Subscription:
    """Cursor over the events under a prefix; ``pull`` is the one database step.

    In the default mode it yields the current event of each topic that changed after the cursor;
    with ``history`` every log entry after it (too_late events, completions and aborts included).
    """

    def __init__(self, prefix: PathLike, since: int = 0, *, history: bool = False) -> None:
        self.topic_prefix = TopicPath.coerce(prefix)
        self.prefix = self.topic_prefix.canonical
        self.cursor = since
        self.history = history
        self.closed = False

    def pull(self) -> list[EventJSON]:
        """The next events after the cursor (at most ``PULL_BATCH``); advances the cursor."""
        events, self.cursor = read_after(self.topic_prefix, self.cursor, history=self.history)
        return events

    def reset_if_ahead(self) -> bool:
        """A cursor past the node's head (a restored database, another node's cursor) cannot be
        honoured: restart from 0 and return True so the client drops its state."""
        if self.cursor > current_iteration():
            self.cursor = 0
            return True
        return False

    def ring(self, iteration: int) -> None:
        raise NotImplementedError("Subscription subclasses must implement ring()")

    def close(self) -> None:
        self.closed = True
        hub.discard(self)


def read_after(prefix: TopicPath, cursor: int, *, history: bool) -> tuple[list[EventJSON], int]:
    """The events under ``prefix`` after iteration ``cursor`` (at most ``PULL_BATCH``) and the cursor
    that follows them. When there are fewer than that, the cursor is at least the node's head: the
    head is read before the query that found nothing more, so everything up to it has been seen.

    Without ``history``: the current event of each topic that changed after the cursor, its
    ``iteration`` being the one at which the topic changed (the event's own for a write, a later
    one when its upload completed or an upload over it was aborted). With ``history``: every log
    entry (too_late events, completions and aborts included).
    """
    head = current_iteration()
    if spread_settings.FEED_PLAIN_SQL:
        read = feed_reads.history_after if history else feed_reads.current_after
        events = read(prefix.canonical, cursor, PULL_BATCH)
    else:
        events = _read_history(prefix, cursor) if history else _read_current(prefix, cursor)
    if not events:
        return [], max(cursor, head)
    if is_last_page(events):  # the query found everything it could see: the head included
        return events, max(head, events[-1]["iteration"])
    return events, events[-1]["iteration"]


def is_last_page(events: list[EventJSON]) -> bool:
    """Whether a ``read_after`` found every event its query could see (fewer than a page): the
    next read would find only what was committed since, which rings a doorbell of its own."""
    return len(events) < PULL_BATCH


def _read_current(prefix: TopicPath, cursor: int) -> list[EventJSON]:
    """``feed_reads.current_after`` through the ORM (``FEED_PLAIN_SQL`` off)."""
    topics = (
        Topic.objects.under(prefix)
        .filter(changed__gt=cursor)
        .select_related("current")
        .order_by("changed")[:PULL_BATCH]
    )
    events: list[EventJSON] = []
    for topic in topics:
        event = topic.current or _aborted_event(topic)
        if event is None:
            continue
        event.topic = topic
        data = event.as_json()
        data["iteration"] = topic.changed
        events.append(data)
    return events


def _read_history(prefix: TopicPath, cursor: int) -> list[EventJSON]:
    """``feed_reads.history_after`` through the ORM (``FEED_PLAIN_SQL`` off)."""
    changes = (
        Change.objects.under(prefix)
        .filter(iteration__gt=cursor)
        .select_related("event__topic")
        .order_by("iteration")[:PULL_BATCH]
    )
    events: list[EventJSON] = []
    for change in changes:
        data = change.event.as_json()
        data["iteration"] = change.iteration
        events.append(data)
    return events


def _aborted_event(topic: Topic) -> Event | None:
    """For a topic left without any value by an abort: the aborted event, to tell subscribers."""
    return Event.objects.filter(topic=topic, aborted=True).order_by("-iteration").first()


class CallbackSubscription(Subscription):
    """Calls a sync callback with each event: the catch-up in the thread that subscribes, live
    events on a delivery thread (``threads.delivery_threads``), never in the writer's, so a slow
    or raising callback can neither hold up nor fail a committed write. Deliveries of one
    subscription run one at a time, in order. A callback that raises ends the subscription: the
    exception is logged and kept in ``error`` (the next events are not delivered, rather than
    delivered with a gap)."""

    def __init__(self, prefix: PathLike, callback: Callback, since: int = 0) -> None:
        super().__init__(prefix, since)
        self.callback = callback
        self.error: BaseException | None = None
        self._lock = threading.Lock()  # one delivery at a time
        self._state = threading.Condition()  # guards the fields below
        self._scheduled = False
        self._rung_again = False
        self.delivered = since  # every event up to this iteration went to the callback

    def start(self) -> CallbackSubscription:
        hub.add(self)
        self.deliver()
        return self

    def ring(self, iteration: int) -> None:
        with self._state:
            if self.closed or iteration <= self.delivered:
                return
            if self._scheduled:
                self._rung_again = True
                return
            self._scheduled = True
        delivery_threads.submit(self._deliver_live)

    def _deliver_live(self) -> None:
        again = True
        while again:
            try:
                self.deliver()
            except Exception as exc:
                logger.exception("Subscription to %r closed: its callback raised", self.prefix)
                self.error = exc
                self.close()
            with self._state:
                again, self._rung_again = self._rung_again and not self.closed, False
                self._scheduled = again

    def deliver(self) -> None:
        with self._lock:
            while not self.closed and (events := self.pull()):
                for event in events:
                    self.callback(event)
                self._mark_delivered(self.cursor)
            self._mark_delivered(self.cursor)

    def _mark_delivered(self, cursor: int) -> None:
        with self._state:
            self.delivered = max(self.delivered, cursor)
            self._state.notify_all()

    def wait_delivered(self, iteration: int, timeout: float = 5.0) -> bool:
        """Block until every event up to ``iteration`` under the prefix reached the callback (a
        write's report says its iteration); False on timeout or once the subscription closed."""
        with self._state:
            return self._state.wait_for(lambda: self.delivered >= iteration or self.closed, timeout) and (
                self.delivered >= iteration
            )

    def close(self) -> None:
        super().close()
        with self._state:
            self._state.notify_all()


class AsyncSubscription(Subscription):
    """An async iterator (and async context manager) of events."""

    def __init__(self, prefix: PathLike, since: int = 0) -> None:
        super().__init__(prefix, since)
        self._bell = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._pending: deque[EventJSON] = deque()
        self._pull = database_sync_to_async(self.pull)
        hub.add(self)

    def ring(self, iteration: int) -> None:
        try:
            self._loop.call_soon_threadsafe(self._bell.set)
        except RuntimeError:  # the subscriber's event loop is gone: nobody will read this
            hub.discard(self)

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> EventJSON:
        while not self._pending:
            if self.closed:
                raise StopAsyncIteration
            self._bell.clear()
            self._pending.extend(await self._pull())
            if not self._pending:
                await self._bell.wait()
        return self._pending.popleft()

    async def __aenter__(self) -> AsyncSubscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        super().close()
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._bell.set)

    async def feed(self, callback: Callable[[EventJSON], Any]) -> None:
        """Call ``callback`` (sync or async, adapted once) with every event until closed."""
        call: Callable[[EventJSON], Awaitable[Any]] = (
            callback if iscoroutinefunction(callback) else database_sync_to_async(callback)
        )
        async for event in self:
            await call(event)
