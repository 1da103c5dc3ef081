"""Django app config of spread_core."""

from __future__ import annotations

from django.apps import AppConfig


class SpreadCoreConfig(AppConfig):
    name = "spread_core"
    verbose_name = "Spread"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.test.signals import setting_changed

        from . import checks, event_log  # noqa: F401  (checks registers the system checks)

        event_log.connect()
        setting_changed.connect(event_log.reconnect_on_change)
