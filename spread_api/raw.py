"""The raw API's request parsing and answer headers, shared by every door: ``RawTopicView`` (DRF),
the streamed-upload middleware and the lean path (``spread_api.lean``).

Headers are read from a mapping with case-insensitive or lower-case names (DRF's
``request.headers``, or the lean path's dict of lower-case names).
"""

from __future__ import annotations

from collections.abc import Mapping

from django.conf import settings

from spread_core.clock import check_client_date, now_us
from spread_core.conf import spread_settings
from spread_core.exceptions import InvalidHeader, ValueTooLarge
from spread_core.models import Event
from spread_core.paths import TopicPath
from spread_core.store import DEFAULT_CONTENT_TYPE, WriteRequest

from . import headers
from .access import Principal

EXPOSED_HEADERS = ", ".join(
    [
        *("From", "X-Spread-Etag", "X-Spread-Iteration", "X-Spread-Sha256", "ETag"),
        *("Content-Length", "Content-Range", "Accept-Ranges"),
    ]
)
SECURITY_MIDDLEWARE = "django.middleware.security.SecurityMiddleware"
CLICKJACKING_MIDDLEWARE = "django.middleware.clickjacking.XFrameOptionsMiddleware"


def write_request(path: TopicPath, principal: Principal, request_headers: Mapping[str, str]) -> WriteRequest:
    """Everything about a write except the body; raises on bad headers or a too-large body."""
    length = headers.parse_content_length(request_headers.get("content-length"))
    if length is not None and length > spread_settings.MAX_UPLOAD:
        raise ValueTooLarge(f"The value is larger than {spread_settings.MAX_UPLOAD} bytes.")
    if_none_match = headers.parse_if_none_match(request_headers.get("if-none-match"))
    if if_none_match is not None and if_none_match != {headers.WILDCARD}:
        raise InvalidHeader("On writes If-None-Match supports only * (create only).")
    date = headers.parse_spread_etag(request_headers.get("x-spread-etag"))
    return WriteRequest(
        path=path.require_topic(),
        origin=principal.origin,
        date=now_us() if date is None else check_client_date(date),
        content_type=headers.parse_content_type(request_headers.get("content-type"), DEFAULT_CONTENT_TYPE),
        create_only=if_none_match is not None,
        expected_sha256=headers.parse_sha256(request_headers.get("x-spread-sha256")),
    )


def not_modified(event: Event, if_none_match_header: str | None) -> bool:
    """Whether ``If-None-Match`` matches the current event (a 304 answer)."""
    if_none_match = headers.parse_if_none_match(if_none_match_header)
    if not if_none_match:
        return False
    return headers.WILDCARD in if_none_match or event.event_id in if_none_match


def not_modified_headers(event: Event) -> dict[str, str]:
    return {"ETag": f'"{event.event_id}"'}


def value_headers(event: Event) -> dict[str, str]:
    """The headers of a value answer (GET, HEAD)."""
    result = {
        "Content-Type": event.content_type,
        "From": event.origin,
        "X-Spread-Etag": f'"{event.date}"',
        "X-Spread-Iteration": str(event.iteration),
        "ETag": f'"{event.event_id}"',
    }
    if event.complete:
        result["Content-Length"] = str(event.size)
        result["Accept-Ranges"] = "bytes"
        if event.sha256:
            result["X-Spread-Sha256"] = event.sha256
    return result


def requested_range(event: Event, request_headers: Mapping[str, str]) -> tuple[int, int] | None:
    """The byte range ``(start, stop)`` a GET asks of ``event``, or None for the whole value: a
    value still uploading is answered whole, and so is a request whose ``If-Range`` does not name
    the current event (a date never matches: values carry no Last-Modified)."""
    header = request_headers.get("range")
    if header is None or not event.complete:
        return None
    if_range = request_headers.get("if-range")
    if if_range is not None and if_range.strip() != f'"{event.event_id}"':
        return None
    return headers.parse_range(header, event.size)


def range_headers(event: Event, byte_range: tuple[int, int]) -> dict[str, str]:
    """The headers of a 206 answer of ``byte_range`` (beside ``value_headers``)."""
    start, stop = byte_range
    return {"Content-Range": f"bytes {start}-{stop - 1}/{event.size}", "Content-Length": str(stop - start)}


def cors_headers() -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": spread_settings.CORS_ORIGIN,
        "Access-Control-Expose-Headers": EXPOSED_HEADERS,
    }


def site_headers() -> dict[str, str]:
    """The headers Django's security and clickjacking middleware add to every answer of the site,
    from the same settings, for answers that do not pass through Django's middleware chain."""
    result: dict[str, str] = {}
    if SECURITY_MIDDLEWARE in settings.MIDDLEWARE:
        if settings.SECURE_CONTENT_TYPE_NOSNIFF:
            result["X-Content-Type-Options"] = "nosniff"
        policy = settings.SECURE_REFERRER_POLICY
        if policy:
            result["Referrer-Policy"] = policy if isinstance(policy, str) else ",".join(policy)
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            result["Cross-Origin-Opener-Policy"] = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    if CLICKJACKING_MIDDLEWARE in settings.MIDDLEWARE:
        result["X-Frame-Options"] = settings.X_FRAME_OPTIONS.upper()
    return result
