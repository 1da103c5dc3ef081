"""The one translation of errors into JSON responses: ``{"error": code, "detail": text}``."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response

from spread_core.exceptions import RangeNotSatisfiable, SpreadError, StorageFull, StoreUnavailable

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"
#: PostgreSQL's SQLSTATE ``disk_full``, and SQLite's name for "database or disk is full" (which it
#: also gives when the file reaches ``max_page_count``).
POSTGRES_DISK_FULL = "53100"
SQLITE_FULL = "SQLITE_FULL"


def _code_and_detail(exc: exceptions.APIException) -> tuple[str, str]:
    detail: Any = exc.detail
    if isinstance(detail, dict):
        # simplejwt's InvalidToken carries {"detail": ..., "code": ..., "messages": [...]}.
        text = str(detail.get("detail", detail))
        code = str(detail.get("code", exc.default_code))
    elif isinstance(detail, list):
        text = "; ".join(str(item) for item in detail)
        code = str(exc.default_code)
    else:
        text = str(detail)
        code = str(getattr(detail, "code", None) or exc.default_code)
    return code, text


def _is_disk_full(exc: OperationalError) -> bool:
    """Whether the driver's error behind Django's ``exc`` says that the database has no room."""
    cause = exc.__cause__
    return (
        getattr(cause, "sqlstate", None) == POSTGRES_DISK_FULL
        or getattr(cause, "sqlite_errorname", None) == SQLITE_FULL
    )


def describe(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of the error answer to ``exc``; unknown errors are logged and
    become a bare 500 without details. Shared by HTTP responses and websocket error frames."""
    headers: dict[str, str] = {}
    if isinstance(exc, SpreadError):
        if isinstance(exc, StorageFull) and exc.__cause__ is not None:
            logger.error("No room left: %s", exc.__cause__)
        if isinstance(exc, StoreUnavailable):
            headers["Retry-After"] = RETRY_AFTER_SECONDS
        if isinstance(exc, RangeNotSatisfiable):
            headers["Content-Range"] = f"bytes */{exc.size}"
        return exc.status_code, exc.as_json(), headers
    if isinstance(exc, OperationalError) and _is_disk_full(exc):
        logger.error("Database full: %s", exc)
        return describe(StorageFull())
    if isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("Database unavailable: %s", exc)
        return describe(StoreUnavailable())
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if isinstance(exc, exceptions.APIException):
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)
        if wait:
            headers["Retry-After"] = str(int(wait))
        code, text = _code_and_detail(exc)
        return exc.status_code, {"error": code, "detail": text}, headers
    if isinstance(exc, DatabaseError):
        logger.exception("Database error")
    else:
        logger.exception("Unexpected error in the Spread API")
    body = {"error": "internal", "detail": "Internal error; it has been logged."}
    return status.HTTP_500_INTERNAL_SERVER_ERROR, body, headers


def error_response(exc: BaseException) -> Response:
    """A JSON error response for any exception."""
    status_code, body, headers = describe(exc)
    return Response(body, status=status_code, headers=headers)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF ``EXCEPTION_HANDLER`` used by every Spread view."""
    return error_response(exc)
