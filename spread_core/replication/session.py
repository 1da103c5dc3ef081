"""One replication session: what both ends of a peer link run once the websocket is open.

Each end sends ``hello`` (its node name, the prefixes it wants from the other, its cursor in the
other's log, and the uploads it is still receiving from it), then serves what the other wants:
``events`` frames of log entries after the other's cursor (an empty one every heartbeat carries the
head, so an idle peer's cursor advances), and the bytes of every upload it sends as binary frames,
while the upload is still arriving. Each end applies what it receives atomically with its cursor.
Events that came from the peer are not sent back to it. See docs/replication.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ..conf import spread_settings
from ..exceptions import Forbidden, InvalidFrame, UploadAborted
from ..iteration import current_iteration
from ..models import Event
from ..paths import TopicPath, intersect_prefixes
from ..reader import ValueReader
from ..threads import in_thread_pool
from . import apply, log

logger = logging.getLogger(__name__)

PROTOCOL = "spread-replication-1"
ID_LENGTH = 32  # an event id: 32 hex characters
BYTES_HEADER = struct.Struct(f"!{ID_LENGTH}sQ")  # event id, byte offset; the bytes follow
CLOSE_BAD_FRAME = 4400
CLOSE_FORBIDDEN = 4403
#: Layer group memberships are renewed this often (layers expire members that are not renewed).
GROUP_RENEW_INTERVAL = 30.0


def close_code(exc: BaseException) -> int:
    """The websocket close code that ends a session because of ``exc`` (either end)."""
    forbidden = isinstance(exc, Forbidden) or getattr(exc, "code", "") == "forbidden_path"
    return CLOSE_FORBIDDEN if forbidden else CLOSE_BAD_FRAME


def dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


def cursor_key(name: str, prefixes: list[str]) -> str:
    """Where a link direction keeps its cursor (``name`` says which link and direction): a new
    prefix set starts from 0."""
    digest = hashlib.sha256(json.dumps(sorted(prefixes)).encode()).hexdigest()[:16]
    return f"{name[:260]}#{digest}"


def _prefix_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise InvalidFrame("Prefixes are a list of canonical path strings.")
    return [TopicPath.from_canonical(p).canonical for p in value]


def _iteration(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidFrame(f"{name} must be a non-negative integer.")
    return value


class Transport:
    """How a session talks to its websocket (a Channels consumer or a websockets client)."""

    async def send_text(self, text: str) -> None:
        raise NotImplementedError("Transport subclasses must implement send_text()")

    async def send_bytes(self, data: bytes) -> None:
        raise NotImplementedError("Transport subclasses must implement send_bytes()")

    async def watch(self, prefixes: list[str], wake: Callable[[], None]) -> None:
        """Call ``wake`` when something under ``prefixes`` changes (doorbells), until cancelled."""
        raise NotImplementedError("Transport subclasses must implement watch()")


@dataclass
class LinkState:
    """What an end knows about the link, for the admin and the status endpoint."""

    remote_node: str = ""
    resumed_from: int = 0
    entries_sent: int = 0
    entries_received: int = 0
    lag_events: int = 0
    caught_up_at: float = field(default_factory=time.monotonic)
    last_seen: float = 0.0

    @property
    def lag_seconds(self) -> float:
        return 0.0 if self.lag_events == 0 else time.monotonic() - self.caught_up_at


class Session:
    """Both directions of one link over one websocket.

    ``want`` is what this end asks the other for; an end that is the server computes it from the
    client's hello (``want_from_hello``). ``allowed_write`` limits what this end accepts (the
    prefixes it asked for, and for a server also the credential's write claims).
    """

    def __init__(
        self,
        transport: Transport,
        *,
        cursor_name: str,
        remote_node: str = "",
        required_node: str = "",
        want: list[str] | None = None,
        may_read: list[str] | None = None,
        may_write: list[str] | None = None,
    ) -> None:
        self.transport = transport
        self.cursor_name = cursor_name
        self.required_node = required_node
        self.state = LinkState(remote_node=remote_node or required_node)
        self.want = want
        self.may_read = may_read
        self.may_write = may_write
        self.serve_prefixes: list[str] = []
        self.cursor_key = ""
        self.send_lock = asyncio.Lock()
        self.bell = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.streams: dict[str, asyncio.Task[Any]] = {}
        self.hello_sent = False
        self.serving = False

    # Sending --------------------------------------------------------------------------------------
    async def send(self, frame: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.transport.send_text(dumps(frame))

    async def send_hello(self) -> None:
        """Announce this end: its name, what it wants, and from where in the other's log."""
        assert self.want is not None  # set by the caller or by want_from_hello
        self.cursor_key = cursor_key(self.cursor_name, self.want)
        since = await in_thread_pool(apply.cursor)(self.cursor_key)
        self.hello_sent = True
        self.state.resumed_from = since
        await self.send(
            {
                "type": "hello",
                "protocol": PROTOCOL,
                "node": spread_settings.NODE_NAME,
                "want": self.want,
                "since": since,
            }
        )

    async def send_resume(self) -> None:
        """Ask for the rest of the uploads this end was receiving from the peer when a previous
        connection dropped (known once the peer's hello said who it is)."""
        uploads = await in_thread_pool(log.blob_events)(self.want, self.state.remote_node)
        await self.send(
            {"type": "resume", "uploads": [{"id": e.event_id, "offset": e.size} for e in uploads]}
        )

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def wake(self) -> None:
        self.bell.set()

    async def serve(self, since: int) -> None:
        """Send the log after ``since`` under ``serve_prefixes``, then follow it."""
        read = in_thread_pool(log.read_log)
        head = await in_thread_pool(current_iteration)()
        reset = since > head  # a cursor this node cannot honour: start over, the peer dedups
        cursor = 0 if reset else since
        sent_upto = -1
        interval = spread_settings.REPLICATION_HEARTBEAT
        while True:
            self.bell.clear()
            entries, upto, head = await read(
                self.serve_prefixes, cursor, exclude_source=self.state.remote_node
            )
            if entries or upto != sent_upto:
                frame: dict[str, Any] = {"type": "events", "entries": entries, "upto": upto, "head": head}
                if reset:
                    frame["reset"], reset = True, False
                await self.send(frame)
                self.state.entries_sent += len(entries)
                sent_upto = upto
                for entry in entries:
                    if entry["kind"] == "write" and entry["is_blob"] and not entry["aborted"]:
                        self.stream_bytes(entry["id"], 0)
            cursor = upto
            if len(entries) >= log.BATCH or (entries and upto < head):
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.bell.wait(), interval)
            if not self.bell.is_set():
                sent_upto = -1  # heartbeat: repeat the head even if unchanged

    def stream_bytes(self, event_id: str, offset: int) -> None:
        if event_id not in self.streams:
            self.streams[event_id] = self.spawn(self._stream_bytes(event_id, offset))

    async def _stream_bytes(self, event_id: str, offset: int) -> None:
        """Send an upload's bytes from ``offset`` as they arrive, then its end (or its abort)."""
        try:
            event = await in_thread_pool(_served_upload)(event_id, self.serve_prefixes)
            if event is None:
                return
            position = 0
            async for chunk in ValueReader(event):
                skip = max(0, offset - position)
                position += len(chunk)
                if skip < len(chunk):
                    async with self.send_lock:
                        await self.transport.send_bytes(
                            BYTES_HEADER.pack(event_id.encode("ascii"), position - len(chunk) + skip)
                            + chunk[skip:]
                        )
            done = await in_thread_pool(Event.objects.get)(pk=event.pk)
            await self.send({"type": "blob_end", "id": event_id, "size": done.size, "sha256": done.sha256})
        except UploadAborted:
            await self.send({"type": "blob_abort", "id": event_id})
        finally:
            self.streams.pop(event_id, None)

    # Receiving ------------------------------------------------------------------------------------
    async def receive_text(self, text: str) -> None:
        try:
            frame = json.loads(text)
        except ValueError as exc:
            raise InvalidFrame("The frame is not valid JSON.", code="bad_json") from exc
        if not isinstance(frame, dict):
            raise InvalidFrame('A frame is a JSON object with a "type".')
        self.state.last_seen = time.time()
        kind = frame.get("type")
        if kind == "hello":
            await self.on_hello(frame)
        elif kind == "events":
            await self.on_events(frame)
        elif kind == "resume":
            await self.on_resume(frame)
        elif kind == "blob_end":
            size, sha256 = _iteration(frame.get("size"), "size"), frame.get("sha256")
            if not isinstance(sha256, str):
                raise InvalidFrame("blob_end needs a sha256.")
            await in_thread_pool(apply.finish_bytes)(
                self._frame_id(frame), self.state.remote_node, size, sha256
            )
        elif kind == "blob_abort":
            reason = f"upload aborted on {self.state.remote_node}"
            await in_thread_pool(apply.abort_bytes)(self._frame_id(frame), self.state.remote_node, reason)
        elif kind == "error":
            logger.warning("Peer %s reports: %s", self.state.remote_node, frame)
        else:
            raise InvalidFrame(f"Unknown frame type {str(kind)[:40]!r}.", code="unknown_type")

    async def receive_bytes(self, data: bytes) -> None:
        if len(data) < BYTES_HEADER.size:
            raise InvalidFrame("A bytes frame starts with an event id and an offset.")
        raw_id, offset = BYTES_HEADER.unpack_from(data)
        event_id = raw_id.decode("ascii", "replace")
        append = in_thread_pool(apply.append_bytes)
        await append(event_id, self.state.remote_node, offset, data[BYTES_HEADER.size :])

    @staticmethod
    def _frame_id(frame: dict[str, Any]) -> str:
        if not isinstance(frame.get("id"), str) or len(frame["id"]) != ID_LENGTH:
            raise InvalidFrame("The frame needs an event id.")
        return str(frame["id"])

    def want_from_hello(self, their_want: list[str]) -> list[str]:
        """A server wants back what the client asked for, where the client may write."""
        return intersect_prefixes(their_want, self.may_write)

    async def on_hello(self, frame: dict[str, Any]) -> None:
        if self.serving:
            raise InvalidFrame("hello was already received.")
        node = frame.get("node")
        if not isinstance(node, str) or not node:
            raise InvalidFrame("hello needs the node name.")
        if self.required_node and node != self.required_node:
            raise Forbidden(f"This credential is for node {self.required_node!r}, not {node!r}.")
        if node == spread_settings.NODE_NAME:
            raise InvalidFrame("A node cannot replicate with itself (same NODE_NAME).", code="same_node")
        self.state.remote_node = node
        their_want = _prefix_list(frame.get("want"))
        since = _iteration(frame.get("since"), "since")
        if self.may_read is not None and intersect_prefixes(their_want, self.may_read) != sorted(
            set(their_want)
        ):
            raise Forbidden("This credential may not read every prefix asked for.")
        if self.want is None:
            self.want = self.want_from_hello(their_want)
        else:  # a client serves the server only what both asked for
            their_want = intersect_prefixes(their_want, self.want)
        self.serve_prefixes = their_want
        if not self.hello_sent:
            await self.send_hello()
        self.serving = True
        self.spawn(self.transport.watch(self.serve_prefixes, self.wake))
        self.spawn(self.serve(since))
        await self.send_resume()

    async def on_resume(self, frame: dict[str, Any]) -> None:
        if not self.serving:
            raise InvalidFrame("resume before hello.")
        uploads = frame.get("uploads")
        if not isinstance(uploads, list) or not all(isinstance(upload, dict) for upload in uploads):
            raise InvalidFrame("resume needs a list of uploads.")
        for upload in uploads:
            self.stream_bytes(self._frame_id(upload), _iteration(upload.get("offset"), "offset"))

    async def on_events(self, frame: dict[str, Any]) -> None:
        if not self.hello_sent or self.want is None:
            raise InvalidFrame("events before hello.")
        entries = frame.get("entries")
        if not isinstance(entries, list):
            raise InvalidFrame("events needs a list of entries.")
        upto, head = _iteration(frame.get("upto"), "upto"), _iteration(frame.get("head"), "head")
        run = in_thread_pool(apply.apply_entries)
        await run(self.cursor_key, self.state.remote_node, self.want, entries, upto)
        self.state.entries_received += len(entries)
        self.state.lag_events = max(0, head - upto)
        if self.state.lag_events == 0:
            self.state.caught_up_at = time.monotonic()

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(BaseException):
                await task


def _served_upload(event_id: str, prefixes: list[str]) -> Event | None:
    """The upload a peer asks bytes of, if it is under the prefixes it may have."""
    return (
        Event.objects.filter(
            log.prefixes_filter(prefixes, "topic__path"), event_id=event_id, is_blob=True, aborted=False
        )
        .select_related("topic")
        .first()
    )
