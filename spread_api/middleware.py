"""Django's default middleware, named once: the demo node's ``MIDDLEWARE``, and the middleware whose
effect on a raw-API answer the lean path reproduces (``spread_api.lean``). Imports nothing, so
settings modules can use it."""

from __future__ import annotations

DJANGO_DEFAULT_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
