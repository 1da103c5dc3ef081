"""Access policies: who may read and write which paths. Pick one with SPREAD["ACCESS_POLICY"]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from spread_core.paths import TopicPath, covers_canonical

from .tokens import READ_CLAIM, WRITE_CLAIM

if TYPE_CHECKING:
    from .access import Principal


class AccessPolicy:
    """Base policy: override ``can_read`` and ``can_write``. ``principal.user`` is the Django user
    (or a token-backed device), ``principal.token`` the validated JWT or None.

    ``runs_on_event_loop``: set it True on a policy that never touches the database or blocks,
    so the lean path may call it on the event loop (else it runs in a thread)."""

    runs_on_event_loop = False

    def can_read(self, principal: Principal, path: TopicPath) -> bool:
        raise NotImplementedError("AccessPolicy subclasses must implement can_read()")

    def can_write(self, principal: Principal, path: TopicPath) -> bool:
        raise NotImplementedError("AccessPolicy subclasses must implement can_write()")


class TokenClaimsPolicy(AccessPolicy):
    """Prefix lists in the token (``spread_read`` / ``spread_write``) restrict access; a token
    without the claim is unrestricted. Anonymous callers may read (when reads are open)."""

    runs_on_event_loop = True  # reads the token's claims only

    def _allowed(self, principal: Principal, path: TopicPath, claim: str) -> bool:
        token: Any = principal.token
        if token is None or claim not in token:
            return True
        prefixes = token[claim]
        if not isinstance(prefixes, list):
            return False
        return any(isinstance(p, str) and covers_canonical(p, path.canonical) for p in prefixes)

    def can_read(self, principal: Principal, path: TopicPath) -> bool:
        return self._allowed(principal, path, READ_CLAIM)

    def can_write(self, principal: Principal, path: TopicPath) -> bool:
        return self._allowed(principal, path, WRITE_CLAIM)
