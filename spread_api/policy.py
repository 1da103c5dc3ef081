"""Access policies: who may read and write which paths. Pick one with SPREAD["ACCESS_POLICY"]."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request

from spread_core.paths import TopicPath, covers_canonical

from .tokens import READ_CLAIM, WRITE_CLAIM


class AccessPolicy:
    """Base policy: override ``can_read`` and ``can_write``."""

    def can_read(self, request: Request, path: TopicPath) -> bool:
        raise NotImplementedError("AccessPolicy subclasses must implement can_read()")

    def can_write(self, request: Request, path: TopicPath) -> bool:
        raise NotImplementedError("AccessPolicy subclasses must implement can_write()")


class TokenClaimsPolicy(AccessPolicy):
    """Prefix lists in the token (``spread_read`` / ``spread_write``) restrict access; a token
    without the claim is unrestricted. Anonymous requests may read (when reads are open)."""

    def _allowed(self, request: Request, path: TopicPath, claim: str) -> bool:
        token: Any = request.auth
        if token is None or claim not in token:
            return True
        prefixes = token[claim]
        if not isinstance(prefixes, list):
            return False
        return any(isinstance(p, str) and covers_canonical(p, path.canonical) for p in prefixes)

    def can_read(self, request: Request, path: TopicPath) -> bool:
        return self._allowed(request, path, READ_CLAIM)

    def can_write(self, request: Request, path: TopicPath) -> bool:
        return self._allowed(request, path, WRITE_CLAIM)
