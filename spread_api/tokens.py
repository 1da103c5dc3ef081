"""JWTs for devices, nodes and Django users; every token carries the writer's ``uid``.

Claims read by Spread:
- ``uid``: the origin of writes made with the token;
- ``spread_kind``: ``"device"`` (anonymous device, no database user), ``"node"`` (a peer node's
  credential for the replication endpoint; ``uid`` is its NODE_NAME) or absent (a Django user);
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
NODE_KIND = "node"


def new_device_uid() -> str:
    return "dev-" + secrets.token_hex(12)


def device_token(
    uid: str,
    *,
    read: Sequence[str] | None = None,
    write: Sequence[str] | None = None,
    kind: str = DEVICE_KIND,
) -> AccessToken:
    """An access token for an anonymous device or (``kind=NODE_KIND``) a peer node; no database
    user is behind it."""
    token = AccessToken()
    token[UID_CLAIM] = uid
    token[KIND_CLAIM] = kind
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


def node_token(node: str, prefixes: Sequence[str] | None = None) -> AccessToken:
    """The credential a peer node named ``node`` uses to replicate with this one: it may read and
    write under ``prefixes`` (None: everywhere)."""
    return device_token(node, read=prefixes, write=prefixes, kind=NODE_KIND)
