"""The history admin: topics by path prefix, each topic's timeline with previews, downloads and
diffs, "restore this version", and rolling a whole subtree back to an iteration or a date, each
with a confirmation page. Rollbacks need the ``rollback_topic`` permission."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html

from spread_api.protection import protect_raw
from spread_api.streaming import served
from spread_core.clock import MICROSECONDS
from spread_core.exceptions import SpreadError
from spread_core.history import timeline
from spread_core.iteration import current_iteration
from spread_core.models import Change, Event
from spread_core.paths import TopicPath
from spread_core.reader import ValueReader, event_as_of

from .activity import activity, conflict_losers
from .browse import browse
from .models import TopicHistory
from .playback import Player, events_between, rebased
from .preview import preview, text_of
from .retention import Policy, prune
from .rollback import parse_point, plan_rollback, restore, rollback

TIMELINE_PAGE = 200
TRAVEL_PAGE = 100
CONFLICTS_PAGE = 100
PROGRESS_MARKER = "<!--spread:progress-->"


def as_datetime(date_us: int) -> datetime:
    return datetime.fromtimestamp(date_us / MICROSECONDS, tz=UTC)


@admin.register(TopicHistory)
class TopicHistoryAdmin(admin.ModelAdmin):
    """Browse topics (search = path prefix), open a topic's timeline, roll back."""

    list_display = ["path_link", "current_origin", "last_update", "current_size", "changed"]
    list_per_page = 100
    show_full_result_count = False
    search_fields = ["path"]
    search_help_text = "Path prefix, e.g. sensors/plant-3"
    timeline_template = "spread_history/timeline.html"
    restore_template = "spread_history/restore_confirm.html"
    rollback_template = "spread_history/rollback.html"
    retention_template = "spread_history/retention.html"
    travel_template = "spread_history/travel.html"
    tree_template = "spread_history/tree.html"
    activity_template = "spread_history/activity.html"
    conflicts_template = "spread_history/conflicts.html"
    replay_template = "spread_history/replay.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[TopicHistory]:
        return super().get_queryset(request).select_related("current")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TopicHistory], search_term: str
    ) -> tuple[QuerySet[TopicHistory], bool]:
        """A search is a path prefix, compared byte for byte (``Topic.objects.under``)."""
        if not search_term.strip():
            return queryset, False
        try:
            prefix = TopicPath.from_canonical(search_term.strip().strip("/"))
        except SpreadError:
            return queryset.none(), False
        return queryset.filter(pk__in=TopicHistory.objects.under(prefix).values("pk")), False

    @admin.display(description="path", ordering="path")
    def path_link(self, topic: TopicHistory) -> str:
        url = reverse("admin:spread_history_topichistory_timeline", args=[topic.pk])
        return format_html('<a href="{}">{}</a>', url, topic.path)

    @admin.display(description="origin")
    def current_origin(self, topic: TopicHistory) -> str:
        return topic.current.origin if topic.current else "-"

    @admin.display(description="last update (UTC)")
    def last_update(self, topic: TopicHistory) -> str:
        return as_datetime(topic.current.date).strftime("%Y-%m-%d %H:%M:%S") if topic.current else "-"

    @admin.display(description="size")
    def current_size(self, topic: TopicHistory) -> str:
        if topic.current is None or topic.current.deleted:
            return "deleted"
        return f"{topic.current.size} B"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_rollback_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("spread_history.rollback_topic")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The tree, level by level: the children of ``?prefix=`` (indexed on parent and name),
        100 per page, filtered by the current value's origin and date (``?origin=``, ``?since=``).
        ``?q=`` jumps to a path."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        query = request.GET.get("q", "").strip().strip("/")
        prefix_text = query or request.GET.get("prefix", "").strip().strip("/")
        try:
            level = browse(
                prefix_text,
                origin=request.GET.get("origin", "").strip(),
                since=request.GET.get("since", "").strip(),
                page=request.GET.get("page", "1"),
            )
        except SpreadError as exc:
            return TemplateResponse(
                request,
                self.tree_template,
                self.context(request, "Topics", error=exc.detail, prefix=prefix_text),
            )
        return TemplateResponse(request, self.tree_template, self.context(request, "Topics", level=level))

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:spread_history_topichistory_timeline", args=[object_id]))

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/timeline/", wrap(self.timeline_view), name="spread_history_topichistory_timeline"),
            path(
                "<int:pk>/restore/<int:iteration>/",
                wrap(self.restore_view),
                name="spread_history_topichistory_restore",
            ),
            path(
                "<int:pk>/download/<int:iteration>/",
                wrap(self.download_view),
                name="spread_history_topichistory_download",
            ),
            path("rollback/", wrap(self.rollback_view), name="spread_history_topichistory_rollback"),
            path("retention/", wrap(self.retention_view), name="spread_history_topichistory_retention"),
            path("travel/", wrap(self.travel_view), name="spread_history_topichistory_travel"),
            path("activity/", wrap(self.activity_view), name="spread_history_topichistory_activity"),
            path("conflicts/", wrap(self.conflicts_view), name="spread_history_topichistory_conflicts"),
            path("replay/", wrap(self.replay_view), name="spread_history_topichistory_replay"),
            *super().get_urls(),
        ]

    # Views ------------------------------------------------------------------------------------------
    def context(self, request: HttpRequest, title: str, **extra: Any) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "can_rollback": self.has_rollback_permission(request),
            **extra,
        }

    def _event(self, pk: int, iteration: int) -> Event:
        return get_object_or_404(Event.objects.select_related("topic"), topic_id=pk, iteration=iteration)

    def timeline_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        topic = get_object_or_404(TopicHistory, pk=pk)
        after = int(request.GET["after"]) if request.GET.get("after", "").isdigit() else 0
        page = timeline(topic.topic_path, after=after, limit=TIMELINE_PAGE)
        current_id = topic.current_id
        rows = [
            {
                "event": event,
                "status": event.history_status(current_id),
                "date": as_datetime(event.date),
                "preview": preview(event),
            }
            for event in page.events
        ]
        diff = self._diff(pk, request.GET.get("a"), request.GET.get("b"))
        chart = activity(Event.objects.for_topic(topic).filter(aborted=False))
        extra = {"topic": topic, "rows": rows, "page": page, "diff": diff, "chart": chart}
        return TemplateResponse(
            request, self.timeline_template, self.context(request, f"History of {topic.path}", **extra)
        )

    def _diff(self, pk: int, a: str | None, b: str | None) -> dict[str, Any] | None:
        if not (a and b and a.isdigit() and b.isdigit()):
            return None
        old, new = self._event(pk, int(a)), self._event(pk, int(b))
        old_text, new_text = text_of(old), text_of(new)
        if old_text is None or new_text is None:
            return {"a": old, "b": new, "lines": None}
        lines = list(
            difflib.unified_diff(
                old_text.splitlines(),
                new_text.splitlines(),
                f"iteration {old.iteration}",
                f"iteration {new.iteration}",
                lineterm="",
            )
        )
        return {"a": old, "b": new, "lines": lines}

    def download_view(self, request: HttpRequest, pk: int, iteration: int) -> StreamingHttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        event = self._event(pk, iteration)
        if event.deleted or event.aborted:
            raise PermissionDenied("This event has no value to download.")
        response = StreamingHttpResponse(
            served(request, iter(ValueReader(event))), content_type=event.content_type
        )
        name = event.topic.path.rsplit("/", 1)[-1] or "value"
        response["Content-Disposition"] = f'attachment; filename="{name}@{event.iteration}"'
        return protect_raw(response)

    def restore_view(self, request: HttpRequest, pk: int, iteration: int) -> HttpResponse:
        """GET: confirmation page; POST: write that version's value again as a new event."""
        if not self.has_rollback_permission(request):
            raise PermissionDenied
        event = self._event(pk, iteration)
        if request.method == "POST":
            report = restore(event, origin=request.user.get_username())
            self.message_user(
                request,
                f"{event.topic.path} restored to the value of iteration {iteration} "
                f"(new event at iteration {report['iteration']}, {report['status']}).",
                messages.SUCCESS,
            )
            return HttpResponseRedirect(reverse("admin:spread_history_topichistory_timeline", args=[pk]))
        return TemplateResponse(
            request,
            self.restore_template,
            self.context(request, "Restore this version?", event=event, preview=preview(event)),
        )

    def rollback_view(self, request: HttpRequest) -> HttpResponse:
        """A subtree as of an iteration or a date: the form, then the preview, then (POST with
        ``confirm``) the rollback in one transaction."""
        if not self.has_rollback_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        prefix_text, point_text = data.get("prefix", ""), data.get("to", "")
        extra: dict[str, Any] = {"prefix": prefix_text, "to": point_text}
        if point_text:
            try:
                prefix = TopicPath.from_canonical(prefix_text.strip().strip("/"))
                point = parse_point(point_text)
            except SpreadError as exc:
                extra["error"] = exc.detail
            else:
                if request.method == "POST" and data.get("confirm"):
                    reports = rollback(prefix, origin=request.user.get_username(), **point)
                    self.message_user(
                        request,
                        f"Rolled {prefix.canonical or '/'} back to {point_text}: "
                        f"{len(reports)} topic(s) changed.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse("admin:spread_history_topichistory_changelist"))
                extra["plan"] = plan_rollback(prefix, **point)
        return TemplateResponse(
            request, self.rollback_template, self.context(request, "Roll a subtree back", **extra)
        )

    def has_prune_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("spread_history.prune_history")

    def retention_view(self, request: HttpRequest) -> HttpResponse:
        """The retention policy and how many events it lets go; POST prunes them."""
        if not self.has_prune_permission(request):
            raise PermissionDenied
        policy = Policy.from_settings()
        if request.method == "POST" and not policy.keeps_everything:
            removed = prune(policy)
            where = f"archived in {policy.archive_dir}" if policy.archive_dir else "deleted"
            self.message_user(request, f"{removed} event(s) {where}.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:spread_history_topichistory_changelist"))
        count = 0 if policy.keeps_everything else prune(policy, dry_run=True)
        return TemplateResponse(
            request,
            self.retention_template,
            self.context(request, "Retention", policy=policy, count=count),
        )

    def travel_view(self, request: HttpRequest) -> HttpResponse:
        """Time travel: the subtree as of an iteration, stepping change by change."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        extra: dict[str, Any] = {"prefix": request.GET.get("prefix", "")}
        try:
            prefix = TopicPath.from_canonical(extra["prefix"].strip().strip("/"))
        except SpreadError as exc:
            extra["error"] = exc.detail
            return TemplateResponse(
                request, self.travel_template, self.context(request, "Time travel", **extra)
            )
        head = current_iteration()
        at_text = request.GET.get("at", "")
        at = min(int(at_text), head) if at_text.isdigit() else head
        changes = Change.objects.under(prefix)
        earlier = changes.filter(iteration__lt=at).order_by("-iteration").values_list("iteration", flat=True)
        later = changes.filter(iteration__gt=at).order_by("iteration").values_list("iteration", flat=True)
        topics = TopicHistory.objects.under(prefix).order_by("path")[:TRAVEL_PAGE]
        rows = []
        for topic in topics:
            event = event_as_of(topic, at=at)
            if event is not None:
                rows.append({"path": topic.path, "event": event, "preview": preview(event)})
        extra.update(
            at=at, head=head, previous=earlier.first(), next=later.first(), rows=rows, limit=TRAVEL_PAGE
        )
        return TemplateResponse(request, self.travel_template, self.context(request, "Time travel", **extra))

    def activity_view(self, request: HttpRequest) -> HttpResponse:
        """Write activity over time of a subtree (``?prefix=``)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        prefix_text = request.GET.get("prefix", "").strip().strip("/")
        try:
            prefix = TopicPath.from_canonical(prefix_text)
        except SpreadError as exc:
            return TemplateResponse(
                request, self.activity_template, self.context(request, "Activity", error=exc.detail)
            )
        chart = activity(Event.objects.under(prefix).filter(aborted=False))
        extra = {"prefix": prefix.canonical, "chart": chart, "start": as_datetime(chart.start)}
        return TemplateResponse(request, self.activity_template, self.context(request, "Activity", **extra))

    def conflicts_view(self, request: HttpRequest) -> HttpResponse:
        """The writes that lost a race, newest first, with a way to promote each."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        page = Paginator(conflict_losers(), CONFLICTS_PAGE).get_page(request.GET.get("page", "1"))
        rows = [{"event": event, "date": as_datetime(event.date)} for event in page.object_list]
        extra = {"page": page, "rows": rows}
        return TemplateResponse(
            request, self.conflicts_template, self.context(request, "Conflict losers", **extra)
        )

    def has_playback_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("spread_history.playback_topic")

    def replay_view(self, request: HttpRequest) -> HttpResponse | StreamingHttpResponse:
        """Replay a range of a subtree into another prefix at a speed: the form and the count
        (GET), then (POST) a page that streams its progress as the events are written."""
        if not self.has_playback_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        fields = {name: data.get(name, "").strip() for name in ("prefix", "start", "end", "into", "speed")}
        extra: dict[str, Any] = {"fields": fields, "count": None}
        if fields["into"]:
            try:
                player, events = self._replay_plan(fields)
            except SpreadError as exc:
                extra["error"] = exc.detail
            else:
                extra["count"] = events.count()
                if request.method == "POST":
                    return self._stream_replay(request, player, events, extra)
        return TemplateResponse(request, self.replay_template, self.context(request, "Replay", **extra))

    def _replay_plan(self, fields: dict[str, str]) -> tuple[Player, QuerySet[Event]]:
        prefix = TopicPath.from_canonical(fields["prefix"].strip("/"))
        into = TopicPath.from_canonical(fields["into"].strip("/"))
        if prefix.covers(into) or into.covers(prefix):
            raise SpreadError("The target prefix must not overlap the replayed one.")
        try:
            speed = float(fields["speed"] or "1")
        except ValueError as exc:
            raise SpreadError("The speed is a number (0: no pauses).") from exc
        start = parse_point(fields["start"]) if fields["start"] else {}
        end = parse_point(fields["end"]) if fields["end"] else {}
        return Player(prefix, into, speed=max(speed, 0.0)), events_between(prefix, start, end)

    def _stream_replay(
        self, request: HttpRequest, player: Player, events: QuerySet[Event], extra: dict[str, Any]
    ) -> StreamingHttpResponse:
        player.origin = request.user.get_username()
        page = render_to_string(
            self.replay_template, self.context(request, "Replay", streaming=True, **extra), request=request
        )
        head, tail = page.split(PROGRESS_MARKER, 1)

        def progress() -> Iterator[bytes]:
            yield head.encode()
            done = 0
            for event in player.steps(events):
                done += 1
                line = format_html(
                    '<li class="replayed">{} / {}: {} (iteration {})</li>\n',
                    done,
                    extra["count"],
                    rebased(event.topic.path, player.prefix, player.into),  # type: ignore[arg-type]
                    event.iteration,
                )
                yield line.encode()
            yield format_html('</ol><p id="replay-done">Replayed {} event(s).</p>', done).encode()
            yield tail.encode()

        return StreamingHttpResponse(served(request, progress()), content_type="text/html; charset=utf-8")
