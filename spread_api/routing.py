"""Channels routes of the realtime API and of replication; include them in your ASGI router."""

from __future__ import annotations

from django.urls import re_path

from .consumers import SpreadSSEConsumer, SpreadWebsocketConsumer
from .replication import ReplicationConsumer

websocket_urlpatterns = [
    re_path(r"^ws/(?P<topic>[\s\S]*)$", SpreadWebsocketConsumer.as_asgi()),
    re_path(r"^replicate/$", ReplicationConsumer.as_asgi()),
]
sse_urlpatterns = [re_path(r"^sse/(?P<topic>[\s\S]*)$", SpreadSSEConsumer.as_asgi())]
