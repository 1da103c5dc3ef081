"""JWTs for devices, nodes and Django users; every token carries the writer's ``uid``.

Claims read by Spread:
- ``uid``: the origin of writes made with the token;
- ``spread_kind``: ``"device"`` (anonymous device, no database user) or absent (a Django user);
- ``spread_read`` / ``spread_write``: optional lists of canonical path prefixes the token may
  read / write (absent: everywhere the policy allows; ``[]``: nowhere).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from rest_framework_simplejwt.serializers import TokenObtainPairSerializer
from rest_framework_simplejwt.tokens import AccessToken, Token

UID_CLAIM = "uid"
KIND_CLAIM = "spread_kind"
READ_CLAIM = "spread_read"
WRITE_CLAIM = "spread_write"
DEVICE_KIND = "device"


def new_device_uid() -> str:
    return "dev-" + secrets.token_hex(12)


def device_token(
    uid: str, *, read: Sequence[str] | None = None, write: Sequence[str] | None = None
) -> AccessToken:
    """An access token for an anonymous device (no database user behind it)."""
    token = AccessToken()
    token[UID_CLAIM] = uid
    token[KIND_CLAIM] = DEVICE_KIND
    if read is not None:
        token[READ_CLAIM] = list(read)
    if write is not None:
        token[WRITE_CLAIM] = list(write)
    return token


class UserTokenObtainPairSerializer(TokenObtainPairSerializer):
    """simplejwt's username/password pair, with the username as the writer ``uid``."""

    @classmethod
    def get_token(cls, user: Any) -> Token:
        token = super().get_token(user)
        token[UID_CLAIM] = user.get_username()
        return token
