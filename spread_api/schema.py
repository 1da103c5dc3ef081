"""OpenAPI (drf-spectacular) description of Spread's authentication."""

from __future__ import annotations

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class SpreadJWTScheme(SimpleJWTScheme):
    target_class = "spread_api.authentication.SpreadJWTAuthentication"
    name = "jwtAuth"
