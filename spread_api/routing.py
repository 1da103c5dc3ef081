"""Channels routes of the realtime API; include them in your ASGI router (see docs/realtime.md)."""

from __future__ import annotations

from django.urls import re_path

from .consumers import SpreadSSEConsumer, SpreadWebsocketConsumer

websocket_urlpatterns = [re_path(r"^ws/(?P<topic>[\s\S]*)$", SpreadWebsocketConsumer.as_asgi())]
sse_urlpatterns = [re_path(r"^sse/(?P<topic>[\s\S]*)$", SpreadSSEConsumer.as_asgi())]
