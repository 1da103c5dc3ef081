"""DRF authentication: a JWT from the ``Authorization`` header or the ``?authorization=`` query
parameter (for clients that cannot set headers), for devices (stateless) and Django users."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from django.utils.encoding import force_bytes
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.models import TokenUser
from rest_framework_simplejwt.tokens import Token

from .tokens import DEVICE_KIND, KIND_CLAIM, NODE_KIND, UID_CLAIM

AUTHORIZATION_QUERY_PARAM = "authorization"


class DevicePrincipal(TokenUser):
    """An authenticated anonymous device (or peer node), backed only by its token."""

    @cached_property
    def id(self) -> str:
        return str(self.token[UID_CLAIM])

    @cached_property
    def username(self) -> str:
        return self.id


class SpreadJWTAuthentication(JWTAuthentication):
    def get_header(self, request: Request) -> bytes:
        header = super().get_header(request)
        if header is None:
            query_value = request.query_params.get(AUTHORIZATION_QUERY_PARAM)
            if query_value:
                header = force_bytes(query_value)
        return header

    def get_user(self, validated_token: Token) -> Any:
        if validated_token.get(KIND_CLAIM) in (DEVICE_KIND, NODE_KIND) and UID_CLAIM in validated_token:
            return DevicePrincipal(validated_token)
        return super().get_user(validated_token)
