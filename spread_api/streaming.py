"""Streaming a blocking iterator of bytes in a response, whatever the server: as is under WSGI;
under ASGI as an async iterator that takes each chunk on the thread pool (the event loop never
blocks, and each step's database connection is cleaned up like Channels does)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from channels.db import DatabaseSyncToAsync
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest


def served(request: HttpRequest | Any, chunks: Iterator[bytes]) -> Iterator[bytes] | AsyncIterator[bytes]:
    """``chunks`` in the form the server of ``request`` (a Django or DRF request) streams best."""
    django_request = getattr(request, "_request", request)
    if not isinstance(django_request, ASGIRequest):
        return chunks

    def take() -> bytes | None:
        return next(chunks, None)

    async def chunks_off_loop() -> AsyncIterator[bytes]:
        take_off_loop = DatabaseSyncToAsync(take, thread_sensitive=False)
        while (chunk := await take_off_loop()) is not None:
            yield chunk

    return chunks_off_loop()
