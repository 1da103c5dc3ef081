"""ASGI application of the demo node: the raw API's hot routes on the lean path; SSE and websockets
through Channels; other HTTP requests through reused request threads, static files, streamed
uploads, then Django (its middleware and view in one thread hop)."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spread_project.settings")
django.setup(set_prefix=False)  # as get_asgi_application() does

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs the app registry)
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from spread_api.asgi import (  # noqa: E402
    OneHopASGIHandler,
    RequestThreadsMiddleware,
    StreamingUploadMiddleware,
)
from spread_api.lean import LeanRawMiddleware  # noqa: E402
from spread_api.routing import sse_urlpatterns, websocket_urlpatterns  # noqa: E402

http_application = RequestThreadsMiddleware(
    ASGIStaticFilesHandler(StreamingUploadMiddleware(OneHopASGIHandler()))  # type: ignore[arg-type]
)
application = LeanRawMiddleware(
    ProtocolTypeRouter(
        {
            "http": URLRouter([*sse_urlpatterns, re_path(r"", http_application)]),  # type: ignore[arg-type]
            "websocket": URLRouter(websocket_urlpatterns),
        }
    )
)
