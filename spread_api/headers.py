"""Parsing of Spread's request headers and query parameters; anything malformed raises
``InvalidHeader`` or ``InvalidParameter`` (400), except ``Range``, which HTTP lets a server ignore
when it cannot use it (RFC 9110, 14.2)."""

from __future__ import annotations

import re

from spread_core.exceptions import InvalidHeader, InvalidParameter, RangeNotSatisfiable

MAX_INT64 = 2**63 - 1
MAX_CONTENT_TYPE_LENGTH = 255
_ETAG_DATE = re.compile(r'^\s*(?:"(\d{1,19})"|(\d{1,19}))\s*$')
_ENTITY_TAG = re.compile(r'\s*(?:W/)?"([^"\x00-\x1f\x7f]*)"\s*')
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BYTE_RANGE = re.compile(r"^\s*bytes\s*=\s*(?:(\d{1,19})\s*-\s*(\d{0,19})|-\s*(\d{1,19}))\s*$", re.IGNORECASE)
WILDCARD = "*"


def parse_spread_etag(value: str | None) -> int | None:
    """``X-Spread-Etag``: an event date in microseconds, quoted ``"123"`` or bare ``123``."""
    if value is None:
        return None
    match = _ETAG_DATE.match(value)
    if not match:
        raise InvalidHeader('X-Spread-Etag must be a date in microseconds, like "1764130000000000".')
    date = int(match.group(1) or match.group(2))
    if date > MAX_INT64:
        raise InvalidHeader("X-Spread-Etag is out of range.")
    return date


def parse_if_none_match(value: str | None) -> set[str] | None:
    """``If-None-Match``: ``*`` gives ``{"*"}``, a list of entity tags gives their values."""
    if value is None:
        return None
    if value.strip() == WILDCARD:
        return {WILDCARD}
    tags: set[str] = set()
    position = 0
    text = value.strip()
    while position < len(text):
        match = _ENTITY_TAG.match(text, position)
        if not match:
            raise InvalidHeader("If-None-Match must be * or a list of quoted entity tags.")
        tags.add(match.group(1))
        position = match.end()
        if position < len(text):
            if text[position] != ",":
                raise InvalidHeader("If-None-Match must be * or a list of quoted entity tags.")
            position += 1
    if not tags:
        raise InvalidHeader("If-None-Match is empty.")
    return tags


def parse_sha256(value: str | None) -> str | None:
    """``X-Spread-Sha256``: the hex SHA-256 the client expects the stored value to have."""
    if value is None:
        return None
    if not _SHA256.match(value.strip()):
        raise InvalidHeader("X-Spread-Sha256 must be 64 hexadecimal digits.")
    return value.strip().lower()


def parse_content_type(value: str | None, default: str) -> str:
    if not value:
        return default
    if len(value) > MAX_CONTENT_TYPE_LENGTH or _CONTROL.search(value):
        raise InvalidHeader("Content-Type is too long or contains control characters.")
    return value


def parse_content_length(value: str | None) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise InvalidHeader("Content-Length must be a non-negative integer.")
    return int(value)


def parse_count(value: str | None, name: str) -> int | None:
    """A non-negative integer query parameter (iteration, date, limit); None when absent."""
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or int(value) > MAX_INT64:
        raise InvalidParameter(f"{name} must be a non-negative integer.")
    return int(value)


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """``Range`` for a value of ``size`` bytes: ``(start, stop)`` (stop exclusive) of the one byte
    range asked for (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``), clipped to the value. None where
    the whole value is answered instead: no header, another unit, several ranges, or a malformed
    one (RFC 9110 lets a server ignore those). Raises ``RangeNotSatisfiable`` for a range that
    starts past the end (or a suffix of an empty value, or of zero bytes)."""
    if value is None:
        return None
    match = _BYTE_RANGE.match(value)
    if match is None:
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        length = int(suffix)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(size - length, 0), size
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: the whole value
    if start >= size:
        raise RangeNotSatisfiable(size)
    stop = size if not last else min(int(last) + 1, size)
    return start, stop
