"""WSGI application of the demo node (uploads are buffered there; prefer spread_node)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spread_project.settings")
application = get_wsgi_application()
