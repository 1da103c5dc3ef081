"""Django app config of spread_api."""

from __future__ import annotations

from django.apps import AppConfig


class SpreadApiConfig(AppConfig):
    name = "spread_api"
    verbose_name = "Spread API"

    def ready(self) -> None:
        from . import checks, schema  # noqa: F401  (register the system checks and OpenAPI auth extension)
