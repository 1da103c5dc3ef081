"""Django app config of spread_history."""

from __future__ import annotations

from django.apps import AppConfig


class SpreadHistoryConfig(AppConfig):
    name = "spread_history"
    verbose_name = "Spread history"
