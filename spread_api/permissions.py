"""DRF permission deciding reads and writes of a topic path through the configured policy."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from spread_core.conf import spread_settings
from spread_core.exceptions import Forbidden

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})
PREFLIGHT_METHOD = "OPTIONS"


class TopicAccess(BasePermission):
    """Writes need a token; reads too when ``READ_REQUIRES_TOKEN``; then the policy decides."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method == PREFLIGHT_METHOD:
            return True
        write = request.method in WRITE_METHODS
        if (write or spread_settings.READ_REQUIRES_TOKEN) and not request.user.is_authenticated:
            raise NotAuthenticated("A valid token is required.")
        policy = spread_settings.ACCESS_POLICY()
        path = view.topic_path
        allowed = policy.can_write(request, path) if write else policy.can_read(request, path)
        if not allowed:
            verb = "write" if write else "read"
            raise Forbidden(f"This token may not {verb} '{path.canonical}'.")
        return True
