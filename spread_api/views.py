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

from spread_core import reader, store, writer
from spread_core.api import report
from spread_core.clock import check_client_date, now_us
from spread_core.conf import spread_settings
from spread_core.exceptions import FeatureDisabled, InvalidHeader, TopicNotFound, ValueTooLarge
from spread_core.models import Event
from spread_core.paths import TopicPath, raw_remainder
from spread_core.replication import read_through
from spread_core.store import DEFAULT_CONTENT_TYPE, WriteRequest

from . import headers
from .access import Principal
from .authentication import SpreadJWTAuthentication
from .errors import exception_handler
from .permissions import TopicAccess
from .protection import protect_raw
from .streaming import served
from .tokens import UserTokenObtainPairSerializer, device_token, new_device_uid

READ_BLOCK = 64 * 1024
EXPOSED_HEADERS = "From, X-Spread-Etag, X-Spread-Iteration, X-Spread-Sha256, ETag, Content-Length"
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


def value_headers(event: Event) -> dict[str, str]:
    result = {
        "Content-Type": event.content_type,
        "From": event.origin,
        "X-Spread-Etag": f'"{event.date}"',
        "X-Spread-Iteration": str(event.iteration),
        "ETag": f'"{event.event_id}"',
    }
    if event.complete:
        result["Content-Length"] = str(event.size)
        if event.sha256:
            result["X-Spread-Sha256"] = event.sha256
    return result


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
        response["Access-Control-Allow-Origin"] = spread_settings.CORS_ORIGIN
        response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
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
        self.topic_path = TopicPath.from_url(raw_topic(request._request, kwargs.get("topic", "")))
        super().initial(request, *args, **kwargs)


class RawTopicView(TopicView):
    """The value of one topic as raw bytes."""

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        return protect_raw(super().finalize_response(request, response, *args, **kwargs))

    def get_write_request(self, request: Request) -> WriteRequest:
        """Everything about a write except the body; raises on bad headers or a too-large body."""
        length = headers.parse_content_length(request.META.get("CONTENT_LENGTH"))
        if length is not None and length > spread_settings.MAX_UPLOAD:
            raise ValueTooLarge(f"The value is larger than {spread_settings.MAX_UPLOAD} bytes.")
        if_none_match = headers.parse_if_none_match(request.headers.get("If-None-Match"))
        if if_none_match is not None and if_none_match != {headers.WILDCARD}:
            raise InvalidHeader("On writes If-None-Match supports only * (create only).")
        date = headers.parse_spread_etag(request.headers.get("X-Spread-Etag"))
        return WriteRequest(
            path=self.topic_path.require_topic(),
            origin=Principal(request.user, request.auth).origin,
            date=now_us() if date is None else check_client_date(date),
            content_type=headers.parse_content_type(request.META.get("CONTENT_TYPE"), DEFAULT_CONTENT_TYPE),
            create_only=if_none_match is not None,
            expected_sha256=headers.parse_sha256(request.headers.get("X-Spread-Sha256")),
        )

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
        if_none_match = headers.parse_if_none_match(request.headers.get("If-None-Match"))
        if if_none_match and (headers.WILDCARD in if_none_match or event.event_id in if_none_match):
            return HttpResponse(status=status.HTTP_304_NOT_MODIFIED, headers={"ETag": f'"{event.event_id}"'})
        return event

    @extend_schema(
        responses={
            # The value, with the content type it was written with.
            (200, "*/*"): OpenApiTypes.BINARY,
            304: OpenApiResponse(description="Not modified"),
            **error_responses(400, 401, 403, 404),
        },
        parameters=[
            OpenApiParameter("If-None-Match", str, OpenApiParameter.HEADER),
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
        if not current.is_blob:  # inline: the bytes are here; no stream, no more thread hops
            return HttpResponse(bytes(current.value or b""), headers=value_headers(current))
        value = reader.ValueReader(current)
        content = value.__aiter__() if isinstance(request._request, ASGIRequest) else iter(value)
        return StreamingHttpResponse(content, headers=value_headers(current))

    @extend_schema(exclude=True)
    def head(self, request: Request, topic: str = "") -> HttpResponse:
        current = self._current(request)
        if isinstance(current, HttpResponse):
            return current
        return HttpResponse(headers=value_headers(current))

    @extend_schema(
        request={"application/octet-stream": OpenApiTypes.BINARY},
        responses={200: REPORT_SCHEMA, **error_responses(400, 401, 403, 408, 409, 413)},
        parameters=WRITE_PARAMETERS,
    )
    def post(self, request: Request, topic: str = "") -> Response:
        write = self.get_write_request(request)
        django_request = request._request
        pieces = iter(lambda: django_request.read(READ_BLOCK), b"")
        return Response(report(writer.write_value(write, pieces)))

    @extend_schema(request=None, responses={200: REPORT_SCHEMA, **error_responses(400, 401, 403, 409)})
    def delete(self, request: Request, topic: str = "") -> Response:
        write = self.get_write_request(request).tombstone()
        return Response(report(store.record(write, value=None)))

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
