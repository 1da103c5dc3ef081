"""Spread's apps in a throwaway Django site: ``INSTALLED_APPS`` + ``include()`` only.

The site is written to ``tmp_path`` (settings, urls, a plain ``get_asgi_application()`` without
Spread's streaming middleware), migrated, and served by a real ``python -m uvicorn`` process, so
uploads take Django's buffered path through ``RawTopicView.post``.

Findings: the raw API needs neither ``drf_spectacular`` nor ``channels`` in ``INSTALLED_APPS``
(both are imported as libraries); the ``api/schema/`` view included by ``spread_api.urls`` needs
DRF's ``DEFAULT_SCHEMA_CLASS`` to be drf-spectacular's, as docs/deployment.md says (the settings
below set it), the ``api/docs/`` page also templates and ``drf_spectacular`` installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from spread_api.tokens import device_token
from spread_core.testing import free_port

from .settings import TEST_SECRET_KEY

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parent.parent
SITE_PACKAGE = "throwaway_site"
READY_TIMEOUT = 60.0

SETTINGS_PY = f'''
from pathlib import Path

SECRET_KEY = {TEST_SECRET_KEY!r}
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
    "spread_core",
    "spread_api",
]
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(Path(__file__).resolve().parent.parent / "site.sqlite3"),
    }}
}}
ROOT_URLCONF = "{SITE_PACKAGE}.urls"
USE_TZ = True
# Needed only by the api/schema/ view of spread_api.urls (docs/deployment.md, check spread_api.W001).
REST_FRAMEWORK = {{"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}}
'''

URLS_PY = """
from django.urls import include, path

urlpatterns = [path("store/", include("spread_api.urls"))]
"""

ASGI_PY = f"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{SITE_PACKAGE}.settings")
application = get_asgi_application()
"""


@pytest.fixture(scope="module")
def site_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Write, migrate and serve the throwaway site; yield its base URL."""
    root = tmp_path_factory.mktemp("reusable-site")
    package = root / SITE_PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "settings.py").write_text(SETTINGS_PY)
    (package / "urls.py").write_text(URLS_PY)
    (package / "asgi.py").write_text(ASGI_PY)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
        "DJANGO_SETTINGS_MODULE": f"{SITE_PACKAGE}.settings",
    }
    env.pop("DATABASE_URL", None)  # the site has its own DATABASES
    migrate = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--no-input"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "Applying spread_core.0001_initial... OK" in migrate.stdout

    port = free_port()
    log_path = root / "uvicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                f"{SITE_PACKAGE}.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",
            ],
            env=env,
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            assert process.poll() is None, log_path.read_text(errors="replace")
            try:
                httpx.get(f"{url}/store/raw/ready", timeout=2.0)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log_path.read_text(errors="replace")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def client(site_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site_url, timeout=60.0) as http:
        yield http


@pytest.fixture
def site_auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {device_token('dev-site')}"}


def test_site_stores_and_serves_a_value_under_its_prefix(
    client: httpx.Client, site_auth: dict[str, str]
) -> None:
    posted = client.post(
        "/store/raw/x/y", content=b"hello site", headers={**site_auth, "Content-Type": "text/plain"}
    )
    assert posted.status_code == 200, posted.text
    report = posted.json()
    assert report["path"] == "x/y"
    assert report["status"] == "ok"
    assert report["propagation"] == [
        {"path": "", "subscribers": 0},
        {"path": "x", "subscribers": 0},
        {"path": "x/y", "subscribers": 0},
    ]

    read = client.get("/store/raw/x/y")
    assert read.status_code == 200
    assert read.content == b"hello site"
    assert read.headers["content-type"] == "text/plain"
    assert read.headers["from"] == "dev-site"
    assert read.headers["etag"] == f'"{report["id"]}"'
    assert read.headers["x-spread-iteration"] == str(report["iteration"])

    unauthenticated = client.post("/store/raw/x/y", content=b"intruder")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["error"] == "not_authenticated"
    assert client.get("/store/raw/x/y").content == b"hello site"


def test_site_splits_the_raw_path_below_its_prefix(client: httpx.Client, site_auth: dict[str, str]) -> None:
    escaped = client.post("/store/raw/x/a%2Fb", content=b"one segment", headers=site_auth)
    assert escaped.status_code == 200, escaped.text
    assert escaped.json()["path"] == "x/a%2Fb"
    assert client.get("/store/raw/x/a%2Fb").content == b"one segment"
    assert client.get("/store/raw/x/a/b").status_code == 404

    empty = client.post("/store/raw/x//b", content=b"bad", headers=site_auth)
    assert empty.status_code == 400
    assert empty.json()["error"] == "invalid_path"


def test_site_round_trips_a_blob_through_the_buffered_upload_path(
    client: httpx.Client, site_auth: dict[str, str]
) -> None:
    value = os.urandom(3 * 1024 * 1024 + 17)  # many chunks, and over Django's 2.5 MB in-memory limit
    posted = client.post("/store/raw/x/blob", content=value, headers=site_auth)
    assert posted.status_code == 200, posted.text
    assert posted.json()["status"] == "ok"

    read = client.get("/store/raw/x/blob")
    assert read.status_code == 200
    assert read.headers["content-length"] == str(len(value))
    assert read.headers["x-spread-sha256"] == hashlib.sha256(value).hexdigest()
    assert read.content == value


def test_site_create_only_conflict_is_409_json(client: httpx.Client, site_auth: dict[str, str]) -> None:
    first = client.post("/store/raw/x/once", content=b"first", headers={**site_auth, "If-None-Match": "*"})
    assert first.status_code == 200, first.text
    conflict = client.post(
        "/store/raw/x/once", content=b"second", headers={**site_auth, "If-None-Match": "*"}
    )
    assert conflict.status_code == 409, conflict.text
    body = conflict.json()
    assert body["error"] == "exists"
    assert body["current"]["id"] == first.json()["id"]
    assert client.get("/store/raw/x/once").content == b"first"


def test_site_serves_the_openapi_schema_of_the_included_urls(client: httpx.Client) -> None:
    response = client.get("/store/api/schema/")
    assert response.status_code == 200, response.text[:500]
    schema = yaml.safe_load(response.text)
    assert "/store/raw/{topic}" in schema["paths"]
