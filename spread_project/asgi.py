"""ASGI application of the demo node: static files, streamed uploads, then Django."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spread_project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402  (needs the app registry)
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from spread_api.asgi import StreamingUploadMiddleware  # noqa: E402

http_application = ASGIStaticFilesHandler(StreamingUploadMiddleware(django_asgi_app))  # type: ignore[arg-type]
application = ProtocolTypeRouter({"http": http_application})
