"""DRF authentication: a JWT from the ``Authorization`` header or the ``?authorization=`` query
parameter (for clients that cannot set headers), for devices (stateless) and Django users."""

from __future__ import annotations

import threading
import time
from functools import cached_property
from typing import Any

from django.utils.encoding import force_bytes
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.models import TokenUser
from rest_framework_simplejwt.tokens import Token

from .tokens import DEVICE_KIND, KIND_CLAIM, NODE_KIND, UID_CLAIM

AUTHORIZATION_QUERY_PARAM = "authorization"


class DevicePrincipal(TokenUser):
    """An authenticated anonymous device (or peer node), backed only by its token."""

    @cached_property
    def id(self) -> str:
        return str(self.token[UID_CLAIM])

    @cached_property
    def username(self) -> str:
        return self.id


class ValidatedTokens:
    """Tokens already validated by simplejwt, kept until they expire (a signature check and claim
    checks per request cost more than the rest of a cached read). Bounded; oldest out first."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._tokens: dict[bytes, Token] = {}
        self._lock = threading.Lock()

    def get(self, raw_token: bytes) -> Token | None:
        with self._lock:
            token = self._tokens.get(raw_token)
        if token is None:
            return None
        if time.time() >= float(token.get("exp", 0)):
            with self._lock:
                self._tokens.pop(raw_token, None)
            return None
        return token

    def add(self, raw_token: bytes, token: Token) -> None:
        if "exp" not in token:
            return  # only tokens that end are kept
        with self._lock:
            if len(self._tokens) >= self.size:
                self._tokens.pop(next(iter(self._tokens)))
            self._tokens[raw_token] = token


validated_tokens = ValidatedTokens()


def is_stateless(token: Token) -> bool:
    """A device's or node's token: its principal comes from the token alone (no database user)."""
    return token.get(KIND_CLAIM) in (DEVICE_KIND, NODE_KIND) and UID_CLAIM in token


class SpreadJWTAuthentication(JWTAuthentication):
    def get_validated_token(self, raw_token: bytes) -> Token:
        """simplejwt's validation, done once per token until it expires."""
        key = bytes(raw_token)
        token = validated_tokens.get(key)
        if token is None:
            token = super().get_validated_token(raw_token)
            validated_tokens.add(key, token)
        return token

    def get_header(self, request: Request) -> bytes:
        header = super().get_header(request)
        if header is None:
            query_value = request.query_params.get(AUTHORIZATION_QUERY_PARAM)
            if query_value:
                header = force_bytes(query_value)
        return header

    def get_user(self, validated_token: Token) -> Any:
        if is_stateless(validated_token):
            return DevicePrincipal(validated_token)
        return super().get_user(validated_token)
