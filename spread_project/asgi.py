"""ASGI application of the demo node: SSE and websockets through Channels; other HTTP requests
through static files, streamed uploads, then Django."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spread_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs the app registry)
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from spread_api.asgi import StreamingUploadMiddleware  # noqa: E402
from spread_api.routing import sse_urlpatterns, websocket_urlpatterns  # noqa: E402

http_application = ASGIStaticFilesHandler(StreamingUploadMiddleware(django_asgi_app))  # type: ignore[arg-type]
application = ProtocolTypeRouter(
    {
        "http": URLRouter([*sse_urlpatterns, re_path(r"", http_application)]),  # type: ignore[arg-type]
        "websocket": URLRouter(websocket_urlpatterns),
    }
)
