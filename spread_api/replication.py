"""The replication endpoint ``/replicate/`` (a websocket for peer nodes) and the link status
endpoint. The session logic is ``spread_core.replication.session``; this module authenticates the
peer with its node credential and carries frames between the socket and the session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from spread_core.exceptions import SpreadError
from spread_core.fanout import DOORBELL, group_name
from spread_core.replication.session import GROUP_RENEW_INTERVAL, Session, Transport, close_code, dumps
from spread_core.replication.status import link_status
from spread_core.threads import in_thread_pool

from .access import Principal, authenticate_token
from .consumers import _query, _scope_token
from .errors import describe
from .tokens import KIND_CLAIM, NODE_KIND, READ_CLAIM, UID_CLAIM, WRITE_CLAIM
from .views import ERROR_SCHEMA, SpreadAPIView

logger = logging.getLogger(__name__)


def node_principal(raw_token: str | None) -> Principal:
    """The peer behind a node credential; raises a 401 error for anything else."""
    principal = authenticate_token(raw_token)
    if principal.token is None:
        raise NotAuthenticated("A node credential is required (spread_token --node NAME).")
    if principal.token.get(KIND_CLAIM) != NODE_KIND or not principal.token.get(UID_CLAIM):
        raise AuthenticationFailed("This token is not a node credential (spread_token --node NAME).")
    return principal


def _claim(principal: Principal, name: str) -> list[str] | None:
    value = principal.token.get(name)
    return [p for p in value if isinstance(p, str)] if isinstance(value, list) else None


class ConsumerTransport(Transport):
    def __init__(self, consumer: ReplicationConsumer) -> None:
        self.consumer = consumer

    async def send_text(self, text: str) -> None:
        await self.consumer.send(text_data=text)

    async def send_bytes(self, data: bytes) -> None:
        await self.consumer.send(bytes_data=data)

    async def watch(self, prefixes: list[str], wake: Any) -> None:
        consumer = self.consumer
        consumer.doorbell = wake
        try:
            while True:
                for prefix in prefixes:
                    await consumer.channel_layer.group_add(group_name(prefix), consumer.channel_name)
                await asyncio.sleep(GROUP_RENEW_INTERVAL)
        finally:
            for prefix in prefixes:
                with contextlib.suppress(Exception):
                    await consumer.channel_layer.group_discard(group_name(prefix), consumer.channel_name)


class ReplicationConsumer(AsyncWebsocketConsumer):
    """``/replicate/``: one peer link, authenticated by a node credential (401 without one)."""

    session: Session | None = None

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        self.doorbell: Any = None
        try:
            principal = await in_thread_pool(node_principal)(_scope_token(self.scope, _query(self.scope)))
        except Exception as exc:
            await self.deny(exc)
            raise StopConsumer() from None
        await self.accept()
        node = str(principal.token[UID_CLAIM])
        self.session = Session(
            ConsumerTransport(self),
            cursor_name=f"in:{node}",
            required_node=node,
            may_read=_claim(principal, READ_CLAIM),
            may_write=_claim(principal, WRITE_CLAIM),
        )

    async def deny(self, exc: BaseException) -> None:
        """Refuse the handshake with an HTTP status and a JSON body (the ASGI denial response)."""
        status, body, _ = describe(exc)
        if "websocket.http.response" not in self.scope.get("extensions", {}):
            await self.close(code=4000 + status)
            return
        headers = [(b"content-type", b"application/json")]
        await self.base_send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await self.base_send({"type": "websocket.http.response.body", "body": dumps(body).encode()})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        assert self.session is not None  # set in websocket_connect before any frame
        try:
            if text_data is not None:
                await self.session.receive_text(text_data)
            elif bytes_data is not None:
                await self.session.receive_bytes(bytes_data)
        except Exception as exc:
            await self.fail(exc)

    async def fail(self, exc: BaseException) -> None:
        """Tell the peer what was wrong and close: a link in error is not half-applied."""
        if not isinstance(exc, SpreadError):
            logger.exception(
                "Replication session with %s failed", self.session and self.session.state.remote_node
            )
        _, body, _ = describe(exc)
        with contextlib.suppress(Exception):
            await self.send(
                text_data=dumps({"type": "error", "code": body["error"], "message": body["detail"]})
            )
        await self.close(code=close_code(exc), reason=body["detail"][:120])

    async def spread_changed(self, message: dict[str, Any]) -> None:
        if self.doorbell is not None:
            self.doorbell()

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message.get("type") == DOORBELL:  # no database hop for doorbells (see spread_api.live)
            await self.spread_changed(message)
            return
        await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        if self.session is not None:
            await self.session.stop()


class ReplicationStatusView(SpreadAPIView):
    """``GET /api/replication/``: this node's name and the state of its outgoing peer links."""

    @extend_schema(responses={200: {"type": "object"}, 401: ERROR_SCHEMA})
    def get(self, request: Request) -> Response:
        if not request.user or not request.user.is_authenticated:
            raise NotAuthenticated("A token is required to read the replication status.")
        return Response(link_status())
