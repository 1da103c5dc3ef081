"""Settings of the demo node, configured only by these environment variables:

- ``DATABASE_URL``: ``sqlite:////abs/path.sqlite3`` (default: ``db.sqlite3`` beside manage.py) or
  ``postgres://user:pw@host:port/db``;
- ``REDIS_URL``: when set, the channels-redis layer (else the in-memory layer);
- ``SPREAD_NODE_NAME``: this node's name (default ``spread``);
- ``SPREAD_BLOB_ROOT``: the directory of blob files (default: ``<database file>-blobs`` beside a
  SQLite database, ``var/blobs-<database name>`` beside manage.py for PostgreSQL);
- ``SECRET_KEY`` (default: a random key generated once into ``.secret_key`` beside manage.py);
- ``DEBUG``: ``1``/``true`` to enable (default off; ``spread_node`` refuses it on a non-loopback
  bind);
- ``ALLOWED_HOSTS``: comma-separated host names the node answers to (default ``*``);
- ``SPREAD_OPTIONS``: a JSON object merged into ``SPREAD`` (for instance
  ``{"LEAN_PATH": false, "CACHE_MAX_BYTES": 0}``: benchmarks run a setting on and off this way).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import dj_database_url

from spread_api.middleware import DJANGO_DEFAULT_MIDDLEWARE

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY_FILE = BASE_DIR / ".secret_key"


def _local_secret_key() -> str:
    """A random key kept beside manage.py, so a node without SECRET_KEY keeps its tokens valid."""
    if not SECRET_KEY_FILE.exists():
        SECRET_KEY_FILE.touch(mode=0o600)
        SECRET_KEY_FILE.write_text(secrets.token_urlsafe(50))
    return SECRET_KEY_FILE.read_text().strip()


DEBUG = os.environ.get("DEBUG", "").lower() in {"1", "true", "yes", "on"}
SECRET_KEY = os.environ.get("SECRET_KEY") or _local_secret_key()
ALLOWED_HOSTS = [host.strip() for host in os.environ.get("ALLOWED_HOSTS", "*").split(",") if host.strip()]

INSTALLED_APPS = [
    "daphne",  # runserver serves ASGI through daphne (development only; see docs/deployment.md)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "spread_core",
    "spread_api",
    "spread_history",
]

MIDDLEWARE = list(DJANGO_DEFAULT_MIDDLEWARE)

ROOT_URLCONF = "spread_project.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "spread_project.wsgi.application"
ASGI_APPLICATION = "spread_project.asgi.application"

SQLITE_OPTIONS = {
    # Writers take the write lock at BEGIN, so they queue on the busy timeout instead of failing
    # with "database is locked" when a read transaction tries to upgrade.
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
}


def database_from_url(url: str) -> dict[str, Any]:
    config: dict[str, Any] = dict(dj_database_url.parse(url))
    if config["ENGINE"] == "django.db.backends.sqlite3":
        config["OPTIONS"] = {**SQLITE_OPTIONS, **config.get("OPTIONS", {})}
        # CONN_MAX_AGE stays 0 (a connection per request or database step). Keeping connections
        # in the reused request threads saved the connect of each request, but replication lag
        # got worse in the same period and kept connections were one suspect (a connection left
        # reading an old snapshot); until that is settled, Django's default. See performance.md.
        name = Path(config["NAME"])
        # Tests use a file (never :memory:) so concurrency tests see real locking.
        config["TEST"] = {"NAME": str(name.with_name(f"test_{name.name}"))}
    elif config["ENGINE"] == "django.db.backends.postgresql":
        # A connection pool instead of one new connection per request (Django's advice for ASGI,
        # where persistent per-thread connections are not safe).
        config["OPTIONS"] = {
            "pool": {"min_size": 2, "max_size": 20, "timeout": 10},
            **config.get("OPTIONS", {}),
        }
    return config


DATABASES = {
    "default": database_from_url(os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Subscribers renew their group membership at every heartbeat (HEARTBEAT_INTERVAL), so
            # members of a process that died stop being counted after a minute. The socket
            # timeout is off: redis-py's default (5 s) equals channels-redis's blocking receive
            # (BZPOPMIN, 5 s), so an idle subscriber's connection would time out and drop it.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "group_expiry": 60,
            },
        }
    }
else:
    # Channels' in-memory layer with a periodic (not per-message) sweep: see spread_core/layers.py.
    CHANNEL_LAYERS = {"default": {"BACKEND": "spread_core.layers.InMemoryChannelLayer"}}


def blob_store(database: dict[str, Any]) -> dict[str, Any]:
    """Blob bytes in files: under ``$SPREAD_BLOB_ROOT`` when set, else beside a SQLite database
    file (the store's default), else in ``var/blobs-<database name>`` beside manage.py."""
    root = os.environ.get("SPREAD_BLOB_ROOT")
    if not root and database["ENGINE"] != "django.db.backends.sqlite3":
        root = str(BASE_DIR / "var" / f"blobs-{database['NAME']}")
    return {"BACKEND": "spread_core.blobs.files.FileBlobStore", "OPTIONS": {"ROOT": root} if root else {}}


SPREAD = {
    "NODE_NAME": os.environ.get("SPREAD_NODE_NAME") or "spread",
    "BLOB_STORE": blob_store(DATABASES["default"]),
    **json.loads(os.environ.get("SPREAD_OPTIONS") or "{}"),
}

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "spread_api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Spread raw API",
    "DESCRIPTION": "Topics, values and tokens of a Spread node. See docs/http-api.md.",
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "INFO" if DEBUG else "WARNING"},
}
