"""One level of the path tree for the history admin: the children of a path, a page at a time,
with their child counts and conflict flags; every query is indexed (parent, name), whatever the
size of the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.paginator import Page, Paginator
from django.db.models import Count

from spread_core.clock import MICROSECONDS
from spread_core.exceptions import SpreadError
from spread_core.models import Event, Topic, path_hash
from spread_core.paths import SEPARATOR, TopicPath

PAGE_SIZE = 100


class UnknownPath(SpreadError):
    status_code = 404
    default_code = "not_found"
    default_detail = "No topic has this path or lies under it."


@dataclass(frozen=True)
class Row:
    topic: Topic
    children: int
    conflicts: bool

    @property
    def updated(self) -> datetime | None:
        current = self.topic.current
        return datetime.fromtimestamp(current.date / MICROSECONDS, tz=UTC) if current else None


@dataclass(frozen=True)
class Level:
    node: Topic | None  # None: the root
    crumbs: list[tuple[str, str]]  # (name, path) from the root down
    page: Page[Topic]
    rows: list[Row]
    origin: str
    since: str

    @property
    def path(self) -> str:
        return self.node.path if self.node else ""


def _since(text: str) -> int | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise SpreadError("since is a date like 2026-11-26 or 2026-11-26T10:00:00 (UTC).") from exc
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * MICROSECONDS)


def browse(prefix: str, *, origin: str = "", since: str = "", page: str | int = 1) -> Level:
    """The children of ``prefix`` ('' = the root), filtered by the current value's origin and
    date (an ISO date or date-time, UTC)."""
    canonical = TopicPath.from_canonical(prefix).canonical
    node = Topic.objects.filter(path_hash=path_hash(canonical)).first() if canonical else None
    if canonical and node is None:
        raise UnknownPath(f"No topic has the path {canonical!r} or lies under it.")
    children = Topic.objects.filter(parent=node).select_related("current").order_by("name")
    if origin:
        children = children.filter(current__origin=origin)
    since_us = _since(since)
    if since_us is not None:
        children = children.filter(current__date__gte=since_us)
    current_page = Paginator(children, PAGE_SIZE).get_page(page)
    topics = list(current_page.object_list)
    ids = [topic.pk for topic in topics]
    counts = dict(Topic.objects.filter(parent__in=ids).values_list("parent").annotate(n=Count("id")))
    conflicted = set(Event.objects.filter(topic__in=ids, too_late=True).values_list("topic", flat=True))
    rows = [Row(topic, counts.get(topic.pk, 0), topic.pk in conflicted) for topic in topics]
    parts = canonical.split(SEPARATOR) if canonical else []
    crumbs = [(part, SEPARATOR.join(parts[: i + 1])) for i, part in enumerate(parts)]
    return Level(node, crumbs, current_page, rows, origin, since)
