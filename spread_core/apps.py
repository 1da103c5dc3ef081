"""Django app config of spread_core."""

from __future__ import annotations

from django.apps import AppConfig


class SpreadCoreConfig(AppConfig):
    name = "spread_core"
    verbose_name = "Spread"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .event_log import log_event
        from .signals import event_accepted

        event_accepted.connect(log_event, dispatch_uid="spread-event-log")
