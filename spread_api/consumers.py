"""Channels consumers of the realtime API: ``/ws/<path>`` (websocket) and ``/sse/<path>`` (SSE).

Both authenticate like the raw API (a token in the ``Authorization`` header, or ``?token=`` /
``?authorization=`` in the URL; a websocket also takes an ``auth`` frame), subscribe to the URL's
path with ``?since=N`` (SSE also ``Last-Event-ID``) and ``?history=1``, and share their delivery
logic through ``spread_api.live.LiveFeeds``. See docs/realtime.md for the wire protocols.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote

import orjson
from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from rest_framework.exceptions import NotAuthenticated
from rest_framework_simplejwt.exceptions import InvalidToken

from spread_core import api
from spread_core.conf import spread_settings
from spread_core.exceptions import InvalidFrame, NotSubscribed, TooManySubscriptions
from spread_core.paths import TopicPath, raw_remainder
from spread_core.threads import in_thread_pool
from spread_core.types import EventJSON

from . import headers
from .access import ANONYMOUS, Principal, authenticate_token, check_read, check_write
from .errors import describe
from .live import LiveFeeds

logger = logging.getLogger(__name__)

TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
BINARY_CONTENT_TYPE = "application/octet-stream"
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_SLOW = 4008
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: the server cannot serve the subscription now
MAX_CLOSE_REASON = 120
#: Deepest nesting of a client frame; a frame is a flat object, its ``ref`` a scalar or close to it.
MAX_FRAME_DEPTH = 32
TOKEN_QUERY_PARAMS = ("token", "authorization")


class _ClientGone(Exception):
    """The transport refused a frame: the client has disconnected (there is nobody to answer)."""


def _dumps(data: Any) -> str:
    """Compact JSON text, non-ASCII kept as is (what ``json.dumps(separators=(",", ":"),
    ensure_ascii=False)`` gives, at orjson's speed). A client's ``ref`` echoed back may hold what
    orjson refuses (an integer over 64 bits): the standard library writes that."""
    try:
        return orjson.dumps(data).decode("utf-8")
    except orjson.JSONEncodeError:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


#: The JSON text of recent events, by ``id()``: the subscribers of a prefix share the events of one
#: read (``live.shared_read``), so an event is serialised once, not once per subscriber. The entry
#: holds the event itself, so its id cannot be reused while cached.
_event_texts: dict[int, tuple[EventJSON, str]] = {}
EVENT_TEXTS_MAX = 4096
#: Longest run of events' JSON in one batched frame (``?batch=1``): well under the 1 MiB that
#: websocket client libraries accept by default.
BATCH_FRAME_TEXT = 256 * 1024


def _event_text(event: EventJSON) -> str:
    cached = _event_texts.get(id(event))
    if cached is not None and cached[0] is event:
        return cached[1]
    text = _dumps(event)
    if len(_event_texts) >= EVENT_TEXTS_MAX:
        _event_texts.clear()
    _event_texts[id(event)] = (event, text)
    return text


def _batched_texts(events: list[EventJSON]) -> Iterator[tuple[str, int]]:
    """The events' JSON texts joined by commas, as few groups as keep each under BATCH_FRAME_TEXT
    characters (one event alone may be longer), with the iteration of each group's last event."""
    group: list[str] = []
    length = last = 0
    for event in events:
        text = _event_text(event)
        if group and length + len(text) > BATCH_FRAME_TEXT:
            yield ",".join(group), last
            group, length = [], 0
        group.append(text)
        length += len(text) + 1
        last = event["iteration"]
    if group:
        yield ",".join(group), last


def _query(scope: dict[str, Any]) -> dict[str, str]:
    """The last value of each query parameter."""
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return {name: values[-1] for name, values in parsed.items()}


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _scope_path(scope: dict[str, Any]) -> TopicPath:
    topic = scope["url_route"]["kwargs"].get("topic", "")
    raw = scope.get("raw_path")
    if raw:
        return TopicPath.from_url(raw_remainder(scope["path"], raw, topic))
    return TopicPath.from_url("/".join(quote(s, safe="") for s in topic.split("/")).encode("ascii"))


def _scope_token(scope: dict[str, Any], query: dict[str, str]) -> str | None:
    for name in TOKEN_QUERY_PARAMS:
        if query.get(name):
            return query[name]
    return _header(scope, b"authorization")


def _parse_since(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= headers.MAX_INT64:
        return value
    # ASCII only: "²" is a digit to str.isdigit() and not to int().
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) <= headers.MAX_INT64:
        return int(value)
    raise InvalidFrame("since must be a non-negative integer iteration.", code="invalid_since")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_plain(value: Any, depth: int = 0) -> None:
    """Raise unless ``value`` nests at most MAX_FRAME_DEPTH deep and its strings are text (an
    unpaired surrogate escape decodes to a str that cannot be encoded, so never echoed back)."""
    if depth > MAX_FRAME_DEPTH:
        raise InvalidFrame(f"The frame nests deeper than {MAX_FRAME_DEPTH} levels.")
    try:
        if isinstance(value, str):
            value.encode("utf-8")
        elif isinstance(value, dict):
            for key, item in value.items():
                key.encode("utf-8")
                _check_plain(item, depth + 1)
        elif isinstance(value, list):
            for item in value:
                _check_plain(item, depth + 1)
    except UnicodeEncodeError as exc:
        raise InvalidFrame("The frame has an unpaired surrogate escape.", code="bad_json") from exc


def _parse_frame(text: str) -> dict[str, Any]:
    """A client frame: a JSON object with a string ``type``; plain JSON text only (no NaN or
    Infinity, no unpaired surrogates) and shallow, so that any part of it can be sent back."""
    try:
        frame = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise InvalidFrame(f"The frame nests deeper than {MAX_FRAME_DEPTH} levels.") from exc
    except ValueError as exc:
        raise InvalidFrame("The frame is not valid JSON.", code="bad_json") from exc
    _check_plain(frame)
    if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
        raise InvalidFrame('A frame is a JSON object with a "type".')
    return frame


async def _authenticate(raw_token: str | None) -> Principal:
    """``authenticate_token`` off the event loop. JWTs are ASCII: any other text is refused here,
    as an invalid token, before it reaches an encoder."""
    if raw_token is not None and not raw_token.isascii():
        raise InvalidToken("A token is ASCII text.")
    return await in_thread_pool(authenticate_token)(raw_token)


def _parse_flag(value: Any, name: str) -> bool:
    """A 0/1 option (``history``, ``batch``); anything else is refused with ``invalid_<name>``."""
    if value in (None, "", "0", "false", False, 0):
        return False
    if value in ("1", "true", True, 1):
        return True
    raise InvalidFrame(f"{name} must be 0 or 1.", code=f"invalid_{name}")


class SpreadWebsocketConsumer(LiveFeeds, AsyncWebsocketConsumer):
    """``/ws/<path>``: JSON frames; many subscriptions per socket; posts acknowledged by ``ack``."""

    principal: Principal

    async def connect(self) -> None:
        self.init_feeds()
        self.principal = ANONYMOUS
        self.pending: tuple[TopicPath, int, bool] | None = None
        await self.accept()
        try:
            query = _query(self.scope)
            path = _scope_path(self.scope)
            since, history = _parse_since(query.get("since")), _parse_flag(query.get("history"), "history")
            self.batch = _parse_flag(query.get("batch"), "batch")
        except Exception as exc:
            await self.send_error(exc)
            await self.close(code=CLOSE_BAD_REQUEST)
            return
        try:
            self.principal = await _authenticate(_scope_token(self.scope, query))
        except Exception as exc:
            await self.send_error(exc)
            await self.close(code=CLOSE_UNAUTHORIZED)
            return
        self.pending = (path, since, history)
        try:
            await self.start_pending()
        except Exception as exc:  # e.g. the database is down: say so, and to come back later
            await self.send_error(exc)
            await self.close(code=CLOSE_TRY_AGAIN_LATER)

    async def start_pending(self) -> None:
        """Start the URL's subscription, unless it waits for an ``auth`` frame."""
        if self.pending is None:
            return
        path, since, history = self.pending
        try:
            check_read(self.principal, path)
        except NotAuthenticated as exc:
            await self.send_error(exc)  # the subscription starts after a valid auth frame
            return
        except Exception as exc:
            self.pending = None
            await self.send_error(exc)
            return
        self.pending = None
        await self.add_feed(path, since, history)

    async def disconnect(self, code: int) -> None:
        await self.remove_all_feeds()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            await self.answer(text_data)
        except _ClientGone as exc:
            logger.debug("Websocket client gone while a frame was answered: %r", exc.__cause__)

    async def answer(self, text_data: str | None) -> None:
        """Handle one client frame; a refused frame gets an error frame."""
        ref = None
        try:
            if text_data is None:
                raise InvalidFrame("Frames are JSON text.")
            frame = _parse_frame(text_data)
            ref = frame.get("ref")
            handler = self.frame_handlers.get(frame["type"])
            if handler is None:
                raise InvalidFrame(f"Unknown frame type {frame['type'][:40]!r}.", code="unknown_type")
            await handler(self, frame)
        except _ClientGone:
            raise
        except Exception as exc:
            await self.send_error(exc, ref=ref)

    async def on_subscribe(self, frame: dict[str, Any]) -> None:
        path = self._frame_path(frame)
        since, history = _parse_since(frame.get("since")), _parse_flag(frame.get("history"), "history")
        check_read(self.principal, path)
        if path.canonical in self.feeds:
            await self.remove_feed(path.canonical)
        elif len(self.feeds) >= spread_settings.MAX_SUBSCRIPTIONS:
            raise TooManySubscriptions()
        await self.add_feed(path, since, history)

    async def on_unsubscribe(self, frame: dict[str, Any]) -> None:
        if not await self.remove_feed(self._frame_path(frame).canonical):
            raise NotSubscribed()

    async def on_post(self, frame: dict[str, Any]) -> None:
        path = self._frame_path(frame).require_topic()
        check_write(self.principal, path)
        if isinstance(frame.get("value"), str):
            value, content_type = frame["value"].encode("utf-8"), TEXT_CONTENT_TYPE
        elif isinstance(frame.get("value_b64"), str):
            try:
                value = base64.b64decode(frame["value_b64"], validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidFrame("value_b64 is not valid base64.") from exc
            content_type = BINARY_CONTENT_TYPE
        else:
            raise InvalidFrame('A post needs a string "value" or "value_b64".')
        if frame.get("content_type") is not None:
            if not isinstance(frame["content_type"], str):
                raise InvalidFrame("content_type must be a string.")
            content_type = headers.parse_content_type(frame["content_type"], content_type)
        report = await api.apost(path, value, content_type=content_type, origin=self.principal.origin)
        await self.send_frame({"type": "ack", "ref": frame.get("ref"), "report": report})

    async def on_auth(self, frame: dict[str, Any]) -> None:
        if not isinstance(frame.get("token"), str):
            raise InvalidFrame('An auth frame needs a string "token".')
        self.principal = await _authenticate(frame["token"])
        await self.start_pending()

    async def on_ping(self, frame: dict[str, Any]) -> None:
        await self.send_frame({"type": "pong"})

    frame_handlers = {
        "subscribe": on_subscribe,
        "unsubscribe": on_unsubscribe,
        "post": on_post,
        "auth": on_auth,
        "ping": on_ping,
    }

    @staticmethod
    def _frame_path(frame: dict[str, Any]) -> TopicPath:
        path = frame.get("path", "")
        if isinstance(path, str):
            return TopicPath.from_canonical(path)
        if isinstance(path, list) and all(isinstance(segment, str) for segment in path):
            return TopicPath(tuple(path))
        raise InvalidFrame('"path" must be a canonical path string or a list of segments.')

    async def send_frame(self, frame: dict[str, Any]) -> None:
        await self.send_frame_text(_dumps(frame))

    async def send_frame_text(self, text: str) -> None:
        try:
            await self.send(text_data=text)
        except OSError as exc:  # uvicorn's ClientDisconnected: the socket is closed
            raise _ClientGone() from exc

    async def send_error(self, exc: BaseException, ref: Any = None) -> None:
        _, body, _ = describe(exc)
        frame: dict[str, Any] = {"type": "error", "code": body["error"], "message": body["detail"]}
        if ref is not None:
            frame["ref"] = ref
        await self.send_frame(frame)

    async def send_update(self, event: EventJSON) -> None:
        await self.send_frame_text('{"type":"update","event":' + _event_text(event) + "}")

    async def send_updates(self, events: list[EventJSON]) -> None:
        for texts, _ in _batched_texts(events):
            await self.send_frame_text('{"type":"updates","events":[' + texts + "]}")

    async def send_synced(self, iteration: int, reset: bool) -> None:
        await self.send_frame(
            {"type": "synced", "iteration": iteration, **({"reset": True} if reset else {})}
        )

    async def send_heartbeat(self, iteration: int) -> None:
        await self.send_frame({"type": "heartbeat", "iteration": iteration})

    async def drop_slow(self, reason: str) -> None:
        logger.warning("Dropping a slow websocket subscriber: %s", reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.close(code=CLOSE_TOO_SLOW, reason=reason[:MAX_CLOSE_REASON]), 1.0)


class SpreadSSEConsumer(LiveFeeds, AsyncConsumer):
    """``/sse/<path>``: a ``text/event-stream`` of one subscription (resume with Last-Event-ID)."""

    async def http_request(self, message: dict[str, Any]) -> None:
        if message.get("more_body"):
            return  # a GET has no body worth reading; wait for its end
        self.init_feeds()
        self.open = False
        try:
            if self.scope["method"] not in ("GET", "HEAD"):
                raise InvalidFrame("Use GET for an event stream.", code="method_not_allowed")
            query = _query(self.scope)
            path = _scope_path(self.scope)
            last_event_id = _header(self.scope, b"last-event-id")
            since = _parse_since(last_event_id if last_event_id is not None else query.get("since"))
            history = _parse_flag(query.get("history"), "history")
            self.batch = _parse_flag(query.get("batch"), "batch")
            principal = await _authenticate(_scope_token(self.scope, query))
            check_read(principal, path)
        except Exception as exc:
            await self.send_json_error(exc)
            raise StopConsumer() from None
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"x-accel-buffering", b"no"),
                    (b"access-control-allow-origin", spread_settings.CORS_ORIGIN.encode("latin-1")),
                ],
            }
        )
        self.open = True
        await self.write(b": spread\n\n")
        try:
            await self.add_feed(path, since, history)
        except Exception as exc:  # e.g. the database is down: an error event ends the stream
            _, body, _ = describe(exc)
            await self.send_message("error", body, None)
            await self.send({"type": "http.response.body", "body": b""})
            await self.remove_all_feeds()
            raise StopConsumer() from None

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        await self.remove_all_feeds()
        raise StopConsumer()

    async def send_json_error(self, exc: BaseException) -> None:
        status, body, extra = describe(exc)
        response_headers = [
            (b"content-type", b"application/json"),
            (b"access-control-allow-origin", spread_settings.CORS_ORIGIN.encode("latin-1")),
            *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()),
        ]
        await self.send({"type": "http.response.start", "status": status, "headers": response_headers})
        await self.send({"type": "http.response.body", "body": _dumps(body).encode("utf-8")})

    async def write(self, chunk: bytes) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    async def send_message(self, event: str, data: Any, message_id: int | None) -> None:
        await self.send_text(event, _dumps(data), message_id)

    async def send_text(self, event: str, data: str, message_id: int | None) -> None:
        head = f"id: {message_id}\n" if message_id is not None else ""
        await self.write(f"{head}event: {event}\ndata: {data}\n\n".encode())

    async def send_update(self, event: EventJSON) -> None:
        await self.send_text("update", _event_text(event), event["iteration"])

    async def send_updates(self, events: list[EventJSON]) -> None:
        for texts, last in _batched_texts(events):
            await self.send_text("updates", "[" + texts + "]", last)

    async def send_synced(self, iteration: int, reset: bool) -> None:
        data: dict[str, Any] = {"iteration": iteration, **({"reset": True} if reset else {})}
        await self.send_message("synced", data, iteration)

    async def send_heartbeat(self, iteration: int) -> None:
        await self.send_message("heartbeat", {"iteration": iteration}, iteration)

    async def drop_slow(self, reason: str) -> None:
        logger.warning("Dropping a slow SSE subscriber: %s", reason)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.send({"type": "http.response.body", "body": b""}), 1.0)
