"""DRF views of the raw HTTP API: ``/raw/<path>`` (GET, HEAD, POST, DELETE, OPTIONS) and tokens.

POST bodies are read as a stream. Behind ``spread_api.asgi.StreamingUploadMiddleware`` (the node's
ASGI stack) they never reach Django at all: the middleware runs this view's ``initial`` and
``get_write_request`` and feeds the body to the store as it arrives. Without it (WSGI, daphne,
Django's plain ASGI handler) ``post`` reads the already received body here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import SAFE_METHODS, AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.views import TokenObtainPairView, TokenRefreshView

from spread_core import api, reader
from spread_core.api import report
from spread_core.conf import spread_settings
from spread_core.exceptions import FeatureDisabled, TopicNotFound
from spread_core.models import Event
from spread_core.paths import TopicPath, parse_url_path, raw_remainder
from spread_core.replication import read_through
from spread_core.store import WriteRequest

from . import headers, raw
from .access import Principal
from .authentication import SpreadJWTAuthentication
from .errors import exception_handler
from .permissions import TopicAccess
from .protection import protect_raw
from .streaming import served
from .tokens import UserTokenObtainPairSerializer, device_token, new_device_uid

READ_BLOCK = 64 * 1024
ALLOWED_HEADERS = "authorization, content-type, x-spread-etag, if-none-match, x-spread-sha256"
ALLOWED_METHODS = "GET, HEAD, POST, DELETE, OPTIONS"
PREFLIGHT_MAX_AGE = "86400"

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    "required": ["error", "detail"],
}
REPORT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "path": {"type": "string"},
        "status": {"type": "string", "enum": ["ok", "too_late", "existing"]},
        "iteration": {"type": "integer"},
        "propagation": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "subscribers": {"type": "integer"}},
            },
        },
    },
}


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI responses: the JSON error body for each of ``statuses``."""
    return dict.fromkeys(statuses, ERROR_SCHEMA)


WRITE_PARAMETERS = [
    OpenApiParameter("X-Spread-Etag", str, OpenApiParameter.HEADER, description="Event date (µs)."),
    OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER, description="* = create only."),
    OpenApiParameter("X-Spread-Sha256", str, OpenApiParameter.HEADER, description="Expected digest."),
]


def raw_topic(request: HttpRequest, topic: str) -> bytes:
    """The undecoded path below the route prefix, so that ``%2F`` stays inside a segment.

    ASGI servers give ``raw_path``; WSGI servers that set ``RAW_URI``/``REQUEST_URI`` work too.
    Otherwise the decoded path is re-escaped segment by segment (``%2F`` is then a separator).
    """
    raw: bytes | None = None
    if isinstance(request, ASGIRequest):
        raw = request.scope.get("raw_path")
    else:
        uri = request.META.get("RAW_URI") or request.META.get("REQUEST_URI")
        raw = uri.encode("latin-1") if uri else None
    if not raw:
        return "/".join(quote(segment, safe="") for segment in topic.split("/")).encode("ascii")
    return raw_remainder(request.path, raw, topic)


class SpreadAPIView(APIView):
    """Common ground of Spread views: JWT auth, JSON errors, CORS headers, OpenAPI schema."""

    authentication_classes = [SpreadJWTAuthentication]
    renderer_classes = [JSONRenderer]
    parser_classes: list[Any] = []
    schema = AutoSchema()

    def get_exception_handler(self) -> Any:
        return exception_handler

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in raw.cors_headers().items():
            response[name] = value
        return response


class TopicSchema(AutoSchema):
    """Reads need no token unless ``READ_REQUIRES_TOKEN``: the schema says the token is optional."""

    def get_auth(self) -> list[Any]:
        auths = list(super().get_auth())
        if self.method in SAFE_METHODS and {} not in auths:
            auths.append({})
        return auths


class TopicView(SpreadAPIView):
    """A view of the topic path in its URL (``topic_path``), with the topic's read/write access."""

    permission_classes = [TopicAccess]
    schema = TopicSchema()
    topic_path: TopicPath

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        self.topic_path = parse_url_path(raw_topic(request._request, kwargs.get("topic", "")))
        super().initial(request, *args, **kwargs)


class RawTopicView(TopicView):
    """The value of one topic as raw bytes."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        return protect_raw(super().finalize_response(request, response, *args, **kwargs))

    def get_write_request(self, request: Request) -> WriteRequest:
        """Everything about a write except the body; raises on bad headers or a too-large body."""
        return raw.write_request(self.topic_path, Principal(request.user, request.auth), request.headers)

    def _current(self, request: Request) -> Event | HttpResponse:
        """The current event, or with ``?at=<iteration>`` / ``?at_date=<µs>`` the one as of then."""
        at = headers.parse_count(request.query_params.get("at"), "at")
        at_date = headers.parse_count(request.query_params.get("at_date"), "at_date")
        path = self.topic_path.require_topic()
        if at is None and at_date is None:
            event = reader.current_event(path)
        else:
            topic = reader.topic_at(path)
            event = None if topic is None else reader.event_as_of(topic, at=at, at_date=at_date)
        if event is None:
            raise TopicNotFound()
        if raw.not_modified(event, request.headers.get("If-None-Match")):
            return HttpResponse(status=status.HTTP_304_NOT_MODIFIED, headers=raw.not_modified_headers(event))
        return event

    @extend_schema(
        responses={
            # The value, with the content type it was written with.
            (200, "*/*"): OpenApiTypes.BINARY,
            # One byte range of a complete value (Range: bytes=a-b, a- or -n), with Content-Range.
            (206, "*/*"): OpenApiTypes.BINARY,
            304: OpenApiResponse(description="Not modified"),
            **error_responses(400, 401, 403, 404, 416),
        },
        parameters=[
            OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER),
            OpenApiParameter(
                "Range",
                str,
                OpenApiParameter.HEADER,
                description="One byte range of a complete value; several ranges get the whole value.",
            ),
            OpenApiParameter(
                "If-Range",
                str,
                OpenApiParameter.HEADER,
                description="Answer the range only if this is the current event's ETag.",
            ),
            OpenApiParameter("at", int, description="The value as of this iteration of the node's log."),
            OpenApiParameter("at_date", int, description="The value as of this event date (µs)."),
        ],
    )
    def get(self, request: Request, topic: str = "") -> HttpResponse | StreamingHttpResponse:
        try:
            current = self._current(request)
        except TopicNotFound:
            as_of = {"at", "at_date"} & set(request.query_params)
            remote = None if as_of else read_through.fetch(self.topic_path)
            if remote is None:
                raise
            return StreamingHttpResponse(served(request, remote.chunks()), headers=remote.headers)
        if isinstance(current, HttpResponse):
            return current
        answer_headers = raw.value_headers(current)
        answer_status: int = status.HTTP_200_OK
        byte_range = raw.requested_range(current, request.headers)
        if byte_range is not None:
            answer_headers.update(raw.range_headers(current, byte_range))
            answer_status = status.HTTP_206_PARTIAL_CONTENT
        if not current.is_blob:  # inline: the bytes are here; no stream, no more thread hops
            start, stop = byte_range or (0, current.size)
            body = bytes(current.value or b"")[start:stop]
            return HttpResponse(body, status=answer_status, headers=answer_headers)
        value = reader.ValueReader(current, byte_range)
        content = value.__aiter__() if isinstance(request._request, ASGIRequest) else iter(value)
        return StreamingHttpResponse(content, status=answer_status, headers=answer_headers)

    @extend_schema(exclude=True)
    def head(self, request: Request, topic: str = "") -> HttpResponse:
        current = self._current(request)
        if isinstance(current, HttpResponse):
            return current
        return HttpResponse(headers=raw.value_headers(current))

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: REPORT_SCHEMA, **error_responses(400, 401, 403, 408, 409, 413)},
        parameters=WRITE_PARAMETERS,
    )
    def post(self, request: Request, topic: str = "") -> Response:
        write = self.get_write_request(request)
        django_request = request._request
        pieces = iter(lambda: django_request.read(READ_BLOCK), b"")
        return Response(report(api.write(write, pieces)))

    @extend_schema(request=None, responses={200: REPORT_SCHEMA, **error_responses(400, 401, 403, 409)})
    def delete(self, request: Request, topic: str = "") -> Response:
        return Response(report(api.write(self.get_write_request(request), None)))

    @extend_schema(exclude=True)
    def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:  # type: ignore[override]
        return Response(
            status=status.HTTP_204_NO_CONTENT,
            headers={
                "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
            },
        )


class RawRootView(RawTopicView):
    """``/raw/`` without a topic: answers every method with a JSON 400 (the root holds no value)."""

    schema = None  # type: ignore[assignment]


class DeviceTokenView(SpreadAPIView):
    """``POST /jwttoken``: a token for a new anonymous device uid."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        request=None,
        responses={
            200: {"type": "object", "properties": {"uid": {"type": "string"}, "token": {"type": "string"}}},
            404: ERROR_SCHEMA,
        },
    )
    def post(self, request: Request) -> Response:
        if not spread_settings.DEVICE_TOKENS:
            raise FeatureDisabled("Device tokens are switched off on this node.")
        uid = new_device_uid()
        token = device_token(uid)
        token.set_exp(lifetime=timedelta(seconds=spread_settings.DEVICE_TOKEN_LIFETIME))
        return Response({"uid": uid, "token": str(token)})


class UserTokenObtainPairView(TokenObtainPairView):
    """simplejwt's ``/api/token/`` whose tokens carry the username as ``uid``."""

    serializer_class = UserTokenObtainPairSerializer
    schema = AutoSchema()


class UserTokenRefreshView(TokenRefreshView):
    schema = AutoSchema()
