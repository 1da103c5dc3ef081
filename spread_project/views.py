"""Views of the demo node: the live demo page of the browser client (``spread/spread.js``)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.views.generic import TemplateView

# The websocket endpoint of the node's ASGI routing (``/ws/<path>``); not a Django URL.
WEBSOCKET_PREFIX = "/ws/"
# Reconnect back-off cap of the demo page: short, so a restarted node is found again quickly.
MAX_RECONNECT_DELAY_MS = 5000


class DemoView(TemplateView):
    """``/demo/?prefix=a/b``: a live tree of the topics under a prefix (default: the root) with a
    value editor; reads and writes go through the websocket client."""

    template_name = "spread_project/demo.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["spread_config"] = {
            "websocket": WEBSOCKET_PREFIX,
            "token": reverse("spread-jwttoken"),
            "raw": reverse("spread-raw-root"),
            "prefix": self.request.GET.get("prefix", ""),
            "max_reconnect_delay": MAX_RECONNECT_DELAY_MS,
        }
        return context
