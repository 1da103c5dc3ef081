"""ASGI middleware that streams POST bodies of ``RawTopicView`` into the store as they arrive.

Django's ASGI handler reads a whole request body before it calls a view, so a reader could not see
the first bytes of a large upload until it ended. This middleware resolves each HTTP request against
the URLconf; a POST routed to ``RawTopicView`` is handled here: the view's own DRF ``initial``
(authentication, permission) and ``get_write_request`` run first, then the body is fed to
``spread_core.api.awrite`` chunk by chunk, and the JSON report (or error) is rendered by
the same view. Every other request goes to the wrapped application unchanged.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from channels.db import database_sync_to_async
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.base import BaseHandler
from django.http import HttpResponse
from django.urls import Resolver404, ResolverMatch, resolve, set_script_prefix
from rest_framework.response import Response

from spread_core import api
from spread_core.api import report
from spread_core.conf import spread_settings
from spread_core.exceptions import ClientDisconnected, UploadTimeout
from spread_core.threads import request_threads

from . import raw
from .views import RawTopicView

logger = logging.getLogger(__name__)

STREAMED_METHODS = frozenset({"POST"})


def _match_raw_view(scope: dict[str, Any]) -> ResolverMatch | None:
    root_path = scope.get("root_path", "")
    path = scope["path"]
    path_info = path[len(root_path) :] if root_path and path.startswith(root_path) else path
    try:
        match = resolve(path_info or "/")
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None)
    if isinstance(view_class, type) and issubclass(view_class, RawTopicView):
        return match
    return None


async def request_body(receive: Any) -> AsyncIterator[bytes]:
    """The request body as it arrives; an idle client or a disconnect ends it with an error."""
    timeout = spread_settings.UPLOAD_IDLE_TIMEOUT
    while True:
        try:
            message = await asyncio.wait_for(receive(), timeout)
        except TimeoutError as exc:
            raise UploadTimeout() from exc
        if message["type"] == "http.disconnect":
            raise ClientDisconnected()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def send_response(response: HttpResponse, send: Any) -> None:
    """Send a rendered, non-streaming Django response."""
    body = response.content
    response_headers = [
        (name.encode("latin-1"), str(value).encode("latin-1")) for name, value in response.items()
    ]
    response_headers.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": response.status_code, "headers": response_headers})
    await send({"type": "http.response.body", "body": body})


class StreamingUploadMiddleware:
    """Wrap a Django ASGI application so uploads to the raw API are streamed, not buffered."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] in STREAMED_METHODS:
            match = _match_raw_view(scope)
            if match is not None:
                # Like Django's handler: this request's sync steps get a thread of their own
                # (RequestThreadsMiddleware's, when it wraps this one), instead of queueing
                # behind every other upload on the one shared thread.
                async with ThreadSensitiveContext():
                    await self.stream_upload(scope, receive, send, match)
                return
        await self.app(scope, receive, send)

    async def stream_upload(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        match: ResolverMatch,
    ) -> None:
        set_script_prefix(scope.get("root_path", "") or "/")
        view_function: Any = match.func
        view: RawTopicView = view_function.view_class(**getattr(view_function, "view_initkwargs", {}))
        django_request = ASGIRequest(dict(scope), io.BytesIO())
        view.setup(django_request, *match.args, **match.kwargs)
        request = view.initialize_request(django_request, *match.args, **match.kwargs)
        view.request = request
        view.headers = view.default_response_headers

        def prepare() -> Any:
            view.initial(request, *match.args, **match.kwargs)
            return view.get_write_request(request)

        def render(result: Any) -> HttpResponse:
            # Error handlers may read the database (a 409 shows the current event): run in a thread.
            if isinstance(result, Exception):
                result = view.handle_exception(result)
            response = view.finalize_response(request, result)
            for name, value in raw.site_headers().items():  # Django's middleware is not on this path
                response.headers.setdefault(name, value)
            response.render()
            return response

        try:
            write = await database_sync_to_async(prepare)()
            recorded = await api.awrite(write, request_body(receive))
            outcome: Any = Response(report(recorded))
        except Exception as exc:
            if not isinstance(exc, ClientDisconnected):
                logger.debug("Streamed upload failed: %s", exc)
            outcome = exc
        await send_response(await database_sync_to_async(render)(outcome), send)


class RequestThreadsMiddleware:
    """Wrap an ASGI application so that each HTTP request runs its sync steps on a reused thread
    (``spread_core.threads.request_threads``) rather than on a new thread per request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with request_threads.context():
            await self.app(scope, receive, send)


class OneHopASGIHandler(ASGIHandler):
    """Django's ASGI handler, with the middleware chain and the view run in ONE thread hop.

    Django's own handler runs each sync middleware (``MiddlewareMixin``: security, sessions,
    CSRF, auth, messages, ...) through ``sync_to_async`` twice per request, once for the request
    and once for the response, then the sync view once more: about 15 hand-offs between the event
    loop and a thread for a small GET, which made the event loop the bottleneck of the node. Here
    the chain is loaded in sync mode and the whole of it runs in the request's thread, as under
    WSGI: the same middleware, in the same order, with the same results. (Async-only middleware
    would still work: Django adapts it in sync mode.)
    """

    def __init__(self) -> None:
        BaseHandler.__init__(self)
        self.load_middleware(is_async=False)

    async def get_response_async(self, request: Any) -> Any:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
