"""Topic paths: validation, the canonical escaped form, and parsing of raw URL paths.

A topic name is 1..32 non-empty UTF-8 segments of at most 255 bytes, without control characters,
never ``.`` or ``..``. Its canonical string is every segment percent-encoded with
``quote(seg, safe="")`` and joined with ``/``, so ``a%2Fb/c`` is the two segments ``a/b`` and ``c``.
The root (no segment) names the whole tree: it can be subscribed to, never written.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import quote

from .exceptions import InvalidPath

MAX_SEGMENTS = 32
MAX_SEGMENT_BYTES = 255
SEPARATOR = "/"
_PERCENT_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")


def _is_control(char: str) -> bool:
    return unicodedata.category(char) == "Cc"


def _check_segment(segment: str) -> str:
    if not isinstance(segment, str):
        raise InvalidPath("Path segments must be strings.")
    if segment == "":
        raise InvalidPath("Empty path segment (a '//' or a trailing '/').")
    if segment in (".", ".."):
        raise InvalidPath("'.' and '..' are not allowed as path segments.")
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        raise InvalidPath(f"A path segment is longer than {MAX_SEGMENT_BYTES} bytes.")
    if any(_is_control(char) for char in segment):
        raise InvalidPath("Control characters are not allowed in paths.")
    try:
        segment.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPath("Path segments must be valid UTF-8.") from exc
    return segment


@dataclass(frozen=True, order=True)
class TopicPath:
    """A validated topic path; ``TopicPath(())`` is the root."""

    segments: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.segments) > MAX_SEGMENTS:
            raise InvalidPath(f"A path has at most {MAX_SEGMENTS} segments.")
        for segment in self.segments:
            _check_segment(segment)

    @classmethod
    def coerce(cls, value: TopicPath | str | Sequence[str]) -> TopicPath:
        """Accept a TopicPath, a canonical string or a list of raw segments."""
        if isinstance(value, TopicPath):
            return value
        if isinstance(value, str):
            return parse_canonical(value)
        return cls(tuple(value))

    @classmethod
    def from_canonical(cls, text: str) -> TopicPath:
        """Parse the canonical (escaped, '/'-joined) form; '' is the root."""
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            # A hand-written path with non-ASCII characters: escape them as a URL would.
            try:
                raw = quote(text, safe="/%").encode("ascii")
            except UnicodeEncodeError as exc:  # an unpaired surrogate: not text
                raise InvalidPath("Path segments must be valid UTF-8.") from exc
        return cls.from_url(raw)

    @classmethod
    def from_url(cls, raw: bytes) -> TopicPath:
        """Parse the undecoded path remainder of a request URL (ASGI ``raw_path`` bytes)."""
        if raw == b"":
            return cls(())
        if _BAD_PERCENT.search(raw):
            raise InvalidPath("Invalid percent-encoding in path.")
        parts = raw.split(b"/")
        if len(parts) > MAX_SEGMENTS:
            raise InvalidPath(f"A path has at most {MAX_SEGMENTS} segments.")
        segments = []
        for part in parts:
            decoded = _PERCENT_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), part)
            try:
                segments.append(decoded.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise InvalidPath("Path segments must be valid UTF-8.") from exc
        return cls(tuple(segments))

    @cached_property
    def canonical(self) -> str:  # computed once per path: every lookup of a read uses it
        return SEPARATOR.join(quote(segment, safe="") for segment in self.segments)

    @property
    def is_root(self) -> bool:
        return not self.segments

    def require_topic(self) -> TopicPath:
        """Return self, or raise when this is the root, which cannot hold a value."""
        if self.is_root:
            raise InvalidPath("The root path cannot hold a value; name a topic.")
        return self

    def ancestors(self) -> Iterator[TopicPath]:
        """The root, every ancestor, and this path itself, from the root down."""
        for depth in range(len(self.segments) + 1):
            yield TopicPath(self.segments[:depth])

    def covers(self, other: TopicPath) -> bool:
        """True when ``other`` is this path or one of its descendants."""
        return other.segments[: len(self.segments)] == self.segments

    def __str__(self) -> str:
        return self.canonical


def covers_canonical(prefix: str, path: str) -> bool:
    """``TopicPath.covers`` on canonical strings, without parsing them."""
    return prefix == "" or path == prefix or path.startswith(prefix + SEPARATOR)


def canonical_ancestors(path: str) -> list[str]:
    """The root, every ancestor and ``path`` itself, as canonical strings, from the root down."""
    if path == "":
        return [""]
    parts = path.split(SEPARATOR)
    return [""] + [SEPARATOR.join(parts[:depth]) for depth in range(1, len(parts) + 1)]


def raw_remainder(decoded_path: str, raw_path: bytes, decoded_topic: str) -> bytes:
    """The undecoded part of ``raw_path`` that the router matched as ``decoded_topic``.

    Routers match on the decoded path, where ``%2F`` has become a separator; the prefix before the
    topic has as many separators in both forms, so the raw remainder starts after as many of them.
    """
    raw = raw_path.split(b"?", 1)[0]
    prefix_separators = decoded_path[: len(decoded_path) - len(decoded_topic)].count(SEPARATOR)
    return b"/".join(raw.split(b"/")[prefix_separators:])


def intersect_prefixes(wanted: list[str], allowed: list[str] | None) -> list[str]:
    """The canonical prefixes covered by both lists (``allowed`` None: no restriction): each
    wanted prefix inside an allowed one, and each allowed prefix inside a wanted one."""
    if allowed is None:
        return sorted(set(wanted))
    inside = {w for w in wanted if any(covers_canonical(a, w) for a in allowed)}
    inside |= {a for a in allowed if any(covers_canonical(w, a) for w in wanted)}
    return sorted(p for p in inside if not any(q != p and covers_canonical(q, p) for q in inside))


#: Paths up to this many bytes (or characters) are remembered once parsed (``parse_url_path``,
#: ``TopicPath.coerce`` of a string).
MAX_REMEMBERED_PATH = 512
REMEMBERED_PATHS = 4096

_parsed_url = functools.lru_cache(maxsize=REMEMBERED_PATHS)(TopicPath.from_url)
_parsed_canonical = functools.lru_cache(maxsize=REMEMBERED_PATHS)(TopicPath.from_canonical)


def parse_url_path(raw: bytes) -> TopicPath:
    """``TopicPath.from_url``, remembered for recent short paths: a hot topic's path is parsed,
    validated and made canonical once, not at every request (a path is immutable)."""
    return _parsed_url(raw) if len(raw) <= MAX_REMEMBERED_PATH else TopicPath.from_url(raw)


def parse_canonical(text: str) -> TopicPath:
    """``TopicPath.from_canonical``, remembered as ``parse_url_path`` (``api.get("a/b")``)."""
    return _parsed_canonical(text) if len(text) <= MAX_REMEMBERED_PATH else TopicPath.from_canonical(text)
