"""DRF permission deciding reads and writes of a topic path, through ``spread_api.access``."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .access import Principal, check_read, check_write

WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})
PREFLIGHT_METHOD = "OPTIONS"


class TopicAccess(BasePermission):
    """Writes need a token; reads too when ``READ_REQUIRES_TOKEN``; then the policy decides."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method == PREFLIGHT_METHOD:
            return True
        principal = Principal(request.user, request.auth)
        if request.method in WRITE_METHODS:
            check_write(principal, view.topic_path)
        else:
            check_read(principal, view.topic_path)
        return True
