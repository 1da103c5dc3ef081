"""Who is asking (a ``Principal``) and whether they may read or write a path, for every transport."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework.exceptions import NotAuthenticated

from spread_core.conf import spread_settings
from spread_core.exceptions import Forbidden
from spread_core.paths import TopicPath

from .authentication import SpreadJWTAuthentication
from .tokens import UID_CLAIM


@dataclass(frozen=True)
class Principal:
    """An authenticated user or device with its token, or the anonymous caller."""

    user: Any
    token: Any = None

    @property
    def is_authenticated(self) -> bool:
        return bool(getattr(self.user, "is_authenticated", False))

    @property
    def origin(self) -> str:
        """The writer identity recorded on events: the token's ``uid``, else the username."""
        if self.token is not None and UID_CLAIM in self.token:
            return str(self.token[UID_CLAIM])
        return str(self.user.get_username())


ANONYMOUS = Principal(AnonymousUser())


def authenticate_token(raw_token: str | bytes | None) -> Principal:
    """Validate a bare JWT (or ``Bearer <jwt>``) from a websocket or SSE request (sync: a user
    token is checked against the database). Raises DRF's ``AuthenticationFailed``/``InvalidToken``."""
    if not raw_token:
        return ANONYMOUS
    text = raw_token.decode("latin-1") if isinstance(raw_token, bytes) else raw_token
    if text.lower().startswith("bearer "):
        text = text[len("bearer ") :]
    authentication = SpreadJWTAuthentication()
    token = authentication.get_validated_token(text.strip().encode("latin-1"))
    return Principal(authentication.get_user(token), token)


def check_read(principal: Principal, path: TopicPath) -> None:
    if spread_settings.READ_REQUIRES_TOKEN and not principal.is_authenticated:
        raise NotAuthenticated("A valid token is required to read.")
    if not spread_settings.ACCESS_POLICY().can_read(principal, path):
        raise Forbidden(f"This token may not read '{path.canonical}'.")


def check_write(principal: Principal, path: TopicPath) -> None:
    if not principal.is_authenticated:
        raise NotAuthenticated("A valid token is required.")
    if not spread_settings.ACCESS_POLICY().can_write(principal, path):
        raise Forbidden(f"This token may not write '{path.canonical}'.")
