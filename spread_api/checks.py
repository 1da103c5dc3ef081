"""System checks of the settings the raw API depends on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register

SPECTACULAR_SCHEMA = "drf_spectacular.openapi.AutoSchema"


@register()
def check_schema_class(app_configs: Any = None, **kwargs: Any) -> list[Warning]:
    configured = getattr(settings, "REST_FRAMEWORK", {}).get("DEFAULT_SCHEMA_CLASS")
    if configured == SPECTACULAR_SCHEMA:
        return []
    return [
        Warning(
            "The /api/schema/ and /api/docs/ views of spread_api.urls need drf-spectacular's schema class.",
            hint=f'Add REST_FRAMEWORK = {{"DEFAULT_SCHEMA_CLASS": "{SPECTACULAR_SCHEMA}"}} to your settings.',
            id="spread_api.W001",
        )
    ]
