"""Write activity over time as an inline SVG bar chart (no chart library, nothing from a CDN), and
the conflict losers: writes that lost to a concurrent one."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, QuerySet
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from spread_core.clock import MICROSECONDS
from spread_core.models import Event, Topic

BUCKETS = 48
WIDTH, HEIGHT = 720, 120
#: A write superseded this soon by another origin's write counts as a lost concurrent write.
CONFLICT_WINDOW = 2 * MICROSECONDS


@dataclass(frozen=True)
class Activity:
    counts: list[int]
    start: int  # µs
    bucket: int  # µs per bucket

    @property
    def bucket_seconds(self) -> float:
        return self.bucket / MICROSECONDS

    @property
    def total(self) -> int:
        return sum(self.counts)

    def svg(self) -> SafeString:
        """Bars of event counts per time bucket, with a title on each bar."""
        if not self.total:
            return format_html('<svg class="spread-activity" width="{}" height="{}"></svg>', WIDTH, HEIGHT)
        peak, bar = max(self.counts), WIDTH / len(self.counts)
        bars = format_html_join(
            "",
            '<rect x="{}" y="{}" width="{}" height="{}"><title>{} event(s)</title></rect>',
            (
                (
                    f"{i * bar:.1f}",
                    f"{HEIGHT - HEIGHT * n / peak:.1f}",
                    f"{max(bar - 1, 1):.1f}",
                    f"{HEIGHT * n / peak:.1f}",
                    n,
                )
                for i, n in enumerate(self.counts)
            ),
        )
        return format_html(
            '<svg class="spread-activity" width="{}" height="{}" viewBox="0 0 {} {}" fill="#417690" '
            'role="img" aria-label="{} events">{}</svg>',
            WIDTH,
            HEIGHT,
            WIDTH,
            HEIGHT,
            self.total,
            bars,
        )


def activity(events: QuerySet[Event], buckets: int = BUCKETS) -> Activity:
    """Counts of ``events`` in ``buckets`` equal slices of time between the first and the last
    time this node stored one (``received``: when the writes happened here, whatever their dates)."""
    bounds = events.aggregate(lo=Min("received"), hi=Max("received"))
    if bounds["lo"] is None:
        return Activity([0] * buckets, 0, 1)
    width = (bounds["hi"] - bounds["lo"]) // buckets + 1
    per_bucket = (
        events.annotate(bucket=(F("received") - bounds["lo"]) / width)
        .values("bucket")
        .annotate(n=Count("pk"))
    )
    counts = [0] * buckets
    for row in per_bucket:
        counts[min(int(row["bucket"]), buckets - 1)] += row["n"]
    return Activity(counts, bounds["lo"], width)


def conflict_losers() -> QuerySet[Event]:
    """Writes that lost a race, newest first: too_late on arrival, or superseded within
    CONFLICT_WINDOW by a write of another origin (an operator can promote one by restoring it)."""
    overtaken = Event.objects.filter(
        topic=OuterRef("topic"),
        aborted=False,
        date__gt=OuterRef("date"),
        date__lte=OuterRef("date") + CONFLICT_WINDOW,
    ).exclude(origin=OuterRef("origin"))
    currents = Topic.objects.filter(current__isnull=False).values("current")
    return (
        Event.objects.filter(aborted=False)
        .filter(Q(too_late=True) | (Exists(overtaken) & ~Q(pk__in=currents)))
        .select_related("topic")
        .order_by("-iteration")
    )
