"""System checks of spread_api."""

from __future__ import annotations

from django.test import override_settings

from spread_api.checks import check_schema_class


def test_missing_spectacular_schema_class_is_reported() -> None:
    with override_settings(REST_FRAMEWORK={}):
        assert [w.id for w in check_schema_class()] == ["spread_api.W001"]


def test_configured_schema_class_passes() -> None:
    with override_settings(REST_FRAMEWORK={"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}):
        assert check_schema_class() == []
