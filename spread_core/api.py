"""The in-process Python API of a Spread node, in sync and async pairs.

``path`` is a list of raw segments or the canonical escaped string. Writes made here have the node
name as origin unless ``origin`` is given. Values are bytes, str (stored as UTF-8 text) or, for
large values, an iterable (``post``) or async iterable (``apost``) of byte strings.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from channels.db import database_sync_to_async

from . import iteration, reader, store, writer
from .conf import spread_settings
from .exceptions import TopicNotFound
from .fanout import silent_report
from .paths import TopicPath
from .replication.peers import ensure_remote, remove_remote
from .store import DEFAULT_CONTENT_TYPE, Recorded, WriteRequest
from .subscriptions import AsyncSubscription, Callback, CallbackSubscription, PathLike
from .types import EventJSON, PostReport

__all__ = [
    "Value",
    "adelete",
    "aget",
    "amaybe_post",
    "aopen",
    "apost",
    "asubscribe",
    "awrite",
    "delete",
    "ensure_remote",
    "get",
    "maybe_post",
    "open_value",
    "post",
    "remove_remote",
    "subscribe",
    "transaction",
    "write",
]

TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
ValueLike = bytes | bytearray | memoryview | str


class Value(NamedTuple):
    iteration: int
    origin: str
    value: bytes


def report(recorded: Recorded) -> PostReport:
    """The JSON answer to a write: the event, its status and the propagation per ancestor."""
    event = recorded.event
    return {
        "id": event.event_id,
        "path": event.path,
        "status": recorded.outcome.value,
        "iteration": event.iteration,
        "propagation": recorded.propagation or silent_report(event.path),
    }


def _write_request(
    path: PathLike,
    *,
    content_type: str | None,
    origin: str | None,
    date: int | None,
    create_only: bool = False,
    text: bool = False,
) -> WriteRequest:
    extra: dict[str, Any] = {} if date is None else {"date": date}
    return WriteRequest(
        path=TopicPath.coerce(path).require_topic(),
        origin=origin or spread_settings.NODE_NAME,
        content_type=content_type or (TEXT_CONTENT_TYPE if text else DEFAULT_CONTENT_TYPE),
        create_only=create_only,
        **extra,
    )


def _pieces(value: ValueLike | Iterable[bytes]) -> Iterable[bytes]:
    if isinstance(value, str):
        return [value.encode("utf-8")]
    if isinstance(value, bytes | bytearray | memoryview):
        return [bytes(value)]
    return value


def write(request: WriteRequest, body: Iterable[bytes] | None) -> Recorded:
    """The one write seam: every door (the HTTP views, the lean path, streamed uploads, websocket
    frames, this module) ends here. ``body`` is the value as byte strings; None writes a
    tombstone."""
    if body is None:
        return store.record(request.tombstone(), value=None)
    return writer.write_value(request, body)


async def awrite(request: WriteRequest, body: AsyncIterable[bytes] | None) -> Recorded:
    """Async ``write``: the value arrives as an async iterable (streamed into the store)."""
    if body is None:
        return await store.arecord(request.tombstone(), value=None)
    return await writer.awrite_value(request, body)


async def _async_pieces(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def post(
    path: PathLike,
    value: ValueLike | Iterable[bytes],
    *,
    content_type: str | None = None,
    origin: str | None = None,
    date: int | None = None,
    create_only: bool = False,
) -> PostReport:
    """Write ``value`` at ``path``; returns the propagation report (status ok/too_late/existing)."""
    request = _write_request(
        path,
        content_type=content_type,
        origin=origin,
        date=date,
        create_only=create_only,
        text=isinstance(value, str),
    )
    return report(write(request, _pieces(value)))


async def apost(
    path: PathLike,
    value: ValueLike | AsyncIterable[bytes],
    *,
    content_type: str | None = None,
    origin: str | None = None,
    date: int | None = None,
    create_only: bool = False,
) -> PostReport:
    """Async ``post``; large values may arrive as an async iterable of byte strings."""
    request = _write_request(
        path,
        content_type=content_type,
        origin=origin,
        date=date,
        create_only=create_only,
        text=isinstance(value, str),
    )
    pieces = value if isinstance(value, AsyncIterable) else _async_pieces(_pieces(value))
    return report(await awrite(request, pieces))


def transaction() -> AbstractContextManager[None]:
    """Make the writes inside ``with transaction():`` one transaction: all or none of them are
    stored, and subscribers are rung after the commit."""
    return iteration.write_transaction()


def maybe_post(path: PathLike, value: ValueLike | Iterable[bytes], **kwargs: Any) -> PostReport:
    """Create-only ``post``: raises ``TopicExists`` when the topic already has a value."""
    return post(path, value, create_only=True, **kwargs)


async def amaybe_post(path: PathLike, value: ValueLike | AsyncIterable[bytes], **kwargs: Any) -> PostReport:
    return await apost(path, value, create_only=True, **kwargs)


def delete(path: PathLike, *, origin: str | None = None, date: int | None = None) -> PostReport:
    """Write a tombstone at ``path`` (a later write revives the topic)."""
    return report(write(_write_request(path, content_type=None, origin=origin, date=date), None))


async def adelete(path: PathLike, *, origin: str | None = None, date: int | None = None) -> PostReport:
    return report(await awrite(_write_request(path, content_type=None, origin=origin, date=date), None))


def open_value(path: PathLike) -> reader.ValueReader:
    """A reader of the current value (iterate it for chunks, ``read()`` for all); ``TopicNotFound``
    when the topic has no value. It follows an upload still in progress."""
    event = reader.current_event(TopicPath.coerce(path).require_topic())
    if event is None:
        raise TopicNotFound()
    return reader.ValueReader(event)


async def aopen(path: PathLike) -> reader.ValueReader:
    """Async ``open_value``; iterate the reader with ``async for``."""
    return await database_sync_to_async(open_value)(path)


def get(path: PathLike) -> Value | None:
    """(iteration, origin, value bytes) of the current value, or None when there is none."""
    try:
        value_reader = open_value(path)
    except TopicNotFound:
        return None
    event = value_reader.event
    return Value(event.iteration, event.origin, value_reader.read())


async def aget(path: PathLike) -> Value | None:
    try:
        value_reader = await aopen(path)
    except TopicNotFound:
        return None
    event = value_reader.event
    return Value(event.iteration, event.origin, await value_reader.aread())


def subscribe(path: PathLike, callback: Callback, since: int = 0) -> CallbackSubscription:
    """Call ``callback(event_json)`` for the current value of every topic under ``path`` changed
    after ``since`` (before returning), then for every change committed in this process.
    ``close()`` the returned subscription to stop."""
    return CallbackSubscription(path, callback, since).start()


async def asubscribe(
    path: PathLike, since: int = 0, callback: Callable[[EventJSON], Any] | None = None
) -> AsyncSubscription:
    """An async iterator of the same events; with ``callback`` (sync or async) a task feeds it."""
    subscription = AsyncSubscription(path, since)
    if callback is not None:
        asyncio.get_running_loop().create_task(subscription.feed(callback))
    return subscription
