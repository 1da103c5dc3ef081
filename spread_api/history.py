"""``GET /history/<path>?after=<iteration>&limit=<n>``: a topic's events as JSON, page by page."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from spread_core.exceptions import TopicNotFound
from spread_core.history import DEFAULT_PAGE, timeline

from . import headers
from .views import ERROR_SCHEMA, TopicView


class TopicHistoryView(TopicView):
    """Every event of one topic (too_late, tombstones and aborted uploads included), oldest first."""

    @extend_schema(
        parameters=[
            OpenApiParameter("after", int, description="Only events stored after this iteration."),
            OpenApiParameter("limit", int, description="Events per page (1-1000, default 100)."),
        ],
        responses={200: {"type": "object"}, 400: ERROR_SCHEMA, 404: ERROR_SCHEMA},
    )
    def get(self, request: Request, topic: str = "") -> Response:
        after = headers.parse_count(request.query_params.get("after"), "after") or 0
        limit = headers.parse_count(request.query_params.get("limit"), "limit") or DEFAULT_PAGE
        page = timeline(self.topic_path, after=after, limit=limit)
        if page.topic is None:
            raise TopicNotFound("No event was ever stored at this path.")
        return Response(page.as_json())


class HistoryRootView(TopicHistoryView):
    """``/history/`` without a topic: a JSON 400 (the root holds no value); not in the schema."""

    schema = None  # type: ignore[assignment]
