"""The lean path of the raw API: GET, HEAD, POST and DELETE of ``/raw/<path>`` answered by a small
ASGI middleware instead of Django's handler, its middleware chain and DRF's view machinery.

It skips framework layers, never Spread's rules: the same path parser, simplejwt's token validation
(``SpreadJWTAuthentication``, whose validated tokens are kept until they expire), the same
``ACCESS_POLICY`` checks (``spread_api.access``), header parsing (``spread_api.raw``), write seam
(``spread_core.api.awrite``), reader and value cache, error translation
(``spread_api.errors.describe`` rendered by DRF's JSON renderer) and answer headers (CORS, the
raw-value protection, and what Django's security and clickjacking middleware add, from the same
settings). On SQLite a cached value is answered on the event loop without any thread hop; on
PostgreSQL after a validation of the cache shared by the concurrent reads
(``SPREAD["CACHE_SHARED_VALIDATION"]``); a miss takes one hop to a thread that keeps its database
connection. Answer headers that depend only on the event and the settings are encoded once per
cached event.

What it does not handle goes on, untouched, to the full stack (``RawTopicView`` stays the
definition): other routes and methods, a Host header ``ALLOWED_HOSTS`` does not accept (Django
answers it), ``?at=`` / ``?at_date=`` reads, a miss while
``READ_THROUGH`` is on, a GET with a ``Range`` header, a HEAD of an upload in progress, and a
mounted ``root_path``. A blob's bytes are streamed from the same ``ValueReader`` the view uses,
followed on the event loop while the upload still arrives.
``SPREAD["LEAN_PATH"] = False`` turns it off; it is also off while the site's ``MIDDLEWARE`` holds
middleware other than Django's defaults, or settings that make Django redirect or add headers per
request (HTTPS redirect, HSTS, PREPEND_WWW, DISALLOWED_USER_AGENTS): their rules would be skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, NamedTuple
from urllib.parse import parse_qsl

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.http.response import ResponseHeaders
from django.urls import reverse
from rest_framework import status
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.renderers import JSONRenderer

from spread_core import api, reader
from spread_core.api import report
from spread_core.cache import Miss
from spread_core.conf import per_settings, spread_settings
from spread_core.exceptions import ClientDisconnected, TopicNotFound
from spread_core.models import Event
from spread_core.paths import TopicPath, parse_url_path
from spread_core.threads import kept_threads, request_threads

from . import raw
from .access import ANONYMOUS, Principal, check_read, check_write
from .asgi import request_body
from .authentication import AUTHORIZATION_QUERY_PARAM, SpreadJWTAuthentication, is_stateless
from .errors import describe
from .middleware import DJANGO_DEFAULT_MIDDLEWARE
from .protection import protection_headers
from .views import RawTopicView

logger = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD"})
WRITE_METHODS = frozenset({"POST", "DELETE"})
AS_OF_PARAMETERS = frozenset({"at", "at_date"})
#: Middleware whose effect on a raw-API answer the lean path reproduces (or that has none).
KNOWN_MIDDLEWARE = frozenset(DJANGO_DEFAULT_MIDDLEWARE)
JSON_CONTENT_TYPE = "application/json"
LOCAL_DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]


#: Hosts whose ``ALLOWED_HOSTS`` verdict is remembered (until a setting changes); others are checked
#: every time, so that requests with made-up Host headers cannot grow the memo.
MAX_REMEMBERED_HOSTS = 256

EncodedHeaders = list[tuple[bytes, bytes]]


class Answer(NamedTuple):
    status: int
    headers: EncodedHeaders  # as sent (``encode_headers``), Content-Length included when known
    body: bytes
    #: The body's bytes as they come (a blob), instead of ``body``.
    stream: AsyncIterator[bytes] | None = None


def encode_headers(headers: dict[str, str], body_length: int | None) -> EncodedHeaders:
    """Django's encoding of header values (``ResponseHeaders``: non-Latin-1 values MIME-encoded,
    newlines refused), with a Content-Length of ``body_length`` unless ``headers`` has one or the
    length is not known yet (None: an upload in progress, sent chunked)."""
    encoded = ResponseHeaders(headers)
    if "Content-Length" not in encoded and body_length is not None:
        encoded["Content-Length"] = str(body_length)
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in encoded.items()]


@per_settings
def _settings_state() -> object:
    """A token that changes whenever a setting changes (what memoised answer headers depend on)."""
    return object()


@per_settings
def _cors_and_site_headers() -> dict[str, str]:
    return {**raw.cors_headers(), **raw.site_headers()}


@per_settings
def lean_path_applies() -> bool:
    """Whether the settings let the lean path answer (see the module docstring)."""
    return (
        bool(spread_settings.LEAN_PATH)
        and set(settings.MIDDLEWARE) <= KNOWN_MIDDLEWARE
        and not settings.SECURE_SSL_REDIRECT
        and not settings.SECURE_HSTS_SECONDS
        and not settings.PREPEND_WWW
        and not settings.DISALLOWED_USER_AGENTS
    )


@per_settings
def _raw_prefix() -> bytes:
    return reverse("spread-raw-root").encode("ascii")


def _request_headers(scope: dict[str, Any]) -> dict[str, str]:
    """Header names in lower case; repeated headers joined with "," (as Django's ASGIRequest)."""
    result: dict[str, str] = {}
    for name, value in scope["headers"]:
        key, text = name.decode("latin-1").lower(), value.decode("latin-1")
        result[key] = f"{result[key]},{text}" if key in result else text
    return result


@per_settings
def _use_x_forwarded_host() -> bool:
    return bool(settings.USE_X_FORWARDED_HOST)


@per_settings
def _host_verdicts() -> dict[str, bool]:
    return {}


def _host_allowed(request_headers: dict[str, str]) -> bool:
    """``HttpRequest.get_host``'s check, with the same Django functions and settings."""
    host = request_headers.get("host")
    if _use_x_forwarded_host() and "x-forwarded-host" in request_headers:
        host = request_headers["x-forwarded-host"]
    if not host:
        return False
    verdicts = _host_verdicts()
    verdict = verdicts.get(host)
    if verdict is None:
        verdict = _check_host(host)
        if len(verdicts) < MAX_REMEMBERED_HOSTS:
            verdicts[host] = verdict
    return verdict


def _check_host(host: str) -> bool:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = LOCAL_DEBUG_HOSTS
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, allowed)


class LeanRawMiddleware:
    """Wrap the node's ASGI application; answer the raw API's hot routes here."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.renderer = JSONRenderer()
        self.authentication = SpreadJWTAuthentication()
        self.allow = ", ".join(RawTopicView().allowed_methods)
        # simplejwt's WWW-Authenticate value does not depend on the request.
        self.authenticate_header = self.authentication.authenticate_header(None)  # type: ignore[arg-type]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in READ_METHODS | WRITE_METHODS
            and lean_path_applies()
        ):
            answer = await self.answer(scope, receive)
            if answer is not None:
                await self.send(send, answer, receive)
                return
        await self.app(scope, receive, send)

    async def answer(self, scope: dict[str, Any], receive: Any) -> Answer | None:
        """The answer, or None to leave the request to the full stack (nothing consumed)."""
        prefix = _raw_prefix()
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
        if scope.get("root_path") or not raw_path.startswith(prefix) or len(raw_path) == len(prefix):
            return None
        query_string: bytes = scope.get("query_string", b"")
        query = (
            dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)) if query_string else {}
        )
        method = scope["method"]
        if method in READ_METHODS and AS_OF_PARAMETERS & set(query):
            return None
        request_headers = _request_headers(scope)
        if method == "GET" and "range" in request_headers:
            return None  # a byte range: answered by the view
        if not _host_allowed(request_headers):
            return None
        try:
            path = parse_url_path(raw_path[len(prefix) :])
            principal = await self.principal(request_headers, query)
            if method in READ_METHODS:
                await self.check(check_read, principal, path)
                return await self.read(method, path, request_headers)
            await self.check(check_write, principal, path)
            write = raw.write_request(path, principal, request_headers)
            body = None if method == "DELETE" else request_body(receive)
            async with request_threads.context():  # a blob's chunks are stored on its thread
                recorded = await api.awrite(write, body)
            return self.json(status.HTTP_200_OK, report(recorded))
        except Exception as exc:
            if isinstance(exc, ClientDisconnected):
                logger.debug("Lean upload ended by the client: %s", exc)
            return self.error(exc)

    async def principal(self, request_headers: dict[str, str], query: dict[str, str]) -> Principal:
        """``SpreadJWTAuthentication.authenticate``: the header, else ``?authorization=``; a
        token of a Django user is looked up in the database (in a thread)."""
        header = request_headers.get("authorization")
        if header is None:
            header = query.get(AUTHORIZATION_QUERY_PARAM) or None
        if header is None:
            return ANONYMOUS
        raw_token = self.authentication.get_raw_token(header.encode("latin-1"))
        if raw_token is None:
            return ANONYMOUS
        token = self.authentication.get_validated_token(raw_token)
        if is_stateless(token):
            user = self.authentication.get_user(token)
        else:
            user = await kept_threads.run(self.authentication.get_user, token)
        return Principal(user, token)

    @staticmethod
    async def check(check: Any, principal: Principal, path: TopicPath) -> None:
        """Run an access check on the loop when the policy says it may, else in a thread."""
        if getattr(spread_settings.ACCESS_POLICY, "runs_on_event_loop", False):
            check(principal, path)
        else:
            await kept_threads.run(check, principal, path)

    async def read(self, method: str, path: TopicPath, request_headers: dict[str, str]) -> Answer | None:
        path = path.require_topic()
        cached = await reader.acached_current(path)
        event = await kept_threads.run(reader.current_event, path) if isinstance(cached, Miss) else cached
        if event is None:
            if spread_settings.READ_THROUGH:
                return None  # the view asks the peers
            raise TopicNotFound()
        if raw.not_modified(event, request_headers.get("if-none-match")):
            return self.not_modified(event)
        if event.is_blob:
            if method == "HEAD":
                return Answer(status.HTTP_200_OK, self.value_headers(event), b"") if event.complete else None
            return Answer(
                status.HTTP_200_OK, self.value_headers(event), b"", reader.ValueReader(event).__aiter__()
            )
        body = b"" if method == "HEAD" else bytes(event.value or b"")
        return Answer(status.HTTP_200_OK, self.value_headers(event), body)

    def value_headers(self, event: Event) -> EncodedHeaders:
        """The encoded headers of a value answer, kept on the (immutable, often cached) event
        until a setting changes: they depend on nothing else. Those of an upload in progress
        are not kept (they change once it completes)."""
        if not event.complete:
            return encode_headers(self._value_headers(event), None)
        state = _settings_state()
        kept = event.__dict__.get("_lean_headers")
        if kept is None or kept[0] is not state:
            kept = (state, encode_headers(self._value_headers(event), event.size))
            event.__dict__["_lean_headers"] = kept
        return kept[1]

    def _value_headers(self, event: Event) -> dict[str, str]:
        return {**raw.value_headers(event), **self.common_headers(), **protection_headers(event.content_type)}

    def not_modified(self, event: Event) -> Answer:
        # As the view's 304 (an HttpResponse with Django's default content type) is protected.
        content_type = f"text/html; charset={settings.DEFAULT_CHARSET}"
        headers = {
            "Content-Type": content_type,
            **raw.not_modified_headers(event),
            **self.common_headers(),
            **protection_headers(content_type),
        }
        return Answer(status.HTTP_304_NOT_MODIFIED, encode_headers(headers, 0), b"")

    def common_headers(self) -> dict[str, str]:
        return {"Allow": self.allow, **_cors_and_site_headers()}

    def json(self, status_code: int, data: Any, extra: dict[str, str] | None = None) -> Answer:
        headers = {
            "Content-Type": JSON_CONTENT_TYPE,
            **(extra or {}),
            **self.common_headers(),
            **protection_headers(None),
        }
        body = self.renderer.render(data)
        return Answer(status_code, encode_headers(headers, len(body)), body)

    def error(self, exc: BaseException) -> Answer:
        if isinstance(exc, NotAuthenticated | AuthenticationFailed):
            # As DRF's APIView.handle_exception: a 401 says how to authenticate.
            exc.auth_header = self.authenticate_header  # type: ignore[union-attr]
        status_code, body, extra = describe(exc)
        return self.json(status_code, body, extra)

    @staticmethod
    async def send(send: Any, answer: Answer, receive: Any) -> None:
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        if answer.stream is not None and not await _streamed(send, receive, answer.stream):
            return
        await send({"type": "http.response.body", "body": answer.body})


async def _streamed(send: Any, receive: Any, stream: AsyncIterator[bytes]) -> bool:
    """Send ``stream``'s bytes as body messages until it ends (True) or the client goes away
    (False: the reader stops, as Django's handler stops a streaming response). An upload that
    breaks off raises here, before the last (empty) body message: the response ends unfinished,
    never a short value presented as whole."""
    gone = asyncio.ensure_future(_disconnected(receive))
    try:
        async for chunk in stream:
            if gone.done():
                return False
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        return not gone.done()
    finally:
        gone.cancel()
        await stream.aclose()  # type: ignore[attr-defined]


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        continue
