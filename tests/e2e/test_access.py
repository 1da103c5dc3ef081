"""Access control on a real node: private reads, read prefixes, switched-off device tokens,
scoped tokens from ``spread_token``, and tokens of deleted users."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import httpx

from spread_api.tokens import device_token
from spread_core.testing import LiveNode
from tests.nodes import MANAGE_PY


def bearer(token: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def manage(node: LiveNode, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(MANAGE_PY), *args], env=node.env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_private_node_needs_a_token_to_read_and_honours_read_prefixes(
    make_node: Callable[..., LiveNode],
) -> None:
    node = make_node("private", DJANGO_SETTINGS_MODULE="tests.node_settings_private")
    writer = bearer(device_token("w"))
    assert httpx.post(f"{node.url}/raw/a/x", content=b"1", headers=writer).status_code == 200
    assert httpx.post(f"{node.url}/raw/b/x", content=b"2", headers=writer).status_code == 200

    anonymous = httpx.get(f"{node.url}/raw/a/x")
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "not_authenticated"
    assert httpx.head(f"{node.url}/raw/a/x").status_code == 401

    assert httpx.get(f"{node.url}/raw/a/x", headers=writer).content == b"1"
    reader_of_a = bearer(device_token("r", read=["a"]))
    assert httpx.get(f"{node.url}/raw/a/x", headers=reader_of_a).content == b"1"
    forbidden = httpx.get(f"{node.url}/raw/b/x", headers=reader_of_a)
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "forbidden"

    disabled = httpx.post(f"{node.url}/jwttoken")
    assert disabled.status_code == 404
    assert disabled.json()["error"] == "disabled"


def test_spread_token_prints_a_scoped_token_the_node_accepts(node: LiveNode) -> None:
    token = manage(node, "spread_token", "--uid", "sensor-7", "--write", "sensors/7")
    allowed = httpx.post(f"{node.url}/raw/sensors/7/t", content=b"21", headers=bearer(token))
    assert allowed.status_code == 200, allowed.text
    assert httpx.get(f"{node.url}/raw/sensors/7/t").headers["from"] == "sensor-7"
    refused = httpx.post(f"{node.url}/raw/sensors/8/t", content=b"21", headers=bearer(token))
    assert refused.status_code == 403
    assert httpx.get(f"{node.url}/raw/sensors/8/t").status_code == 404

    read_only = manage(node, "spread_token", "--uid", "viewer", "--write")
    assert httpx.post(f"{node.url}/raw/x", content=b"1", headers=bearer(read_only)).status_code == 403


def test_token_of_a_deleted_user_is_refused(node: LiveNode) -> None:
    manage(
        node,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.create_user('gone', password='pw-12345')",
    )
    pair = httpx.post(f"{node.url}/api/token/", json={"username": "gone", "password": "pw-12345"})
    assert pair.status_code == 200, pair.text
    access = pair.json()["access"]
    assert httpx.post(f"{node.url}/raw/u/a", content=b"1", headers=bearer(access)).status_code == 200
    manage(
        node,
        "shell",
        "-c",
        "from django.contrib.auth.models import User; User.objects.filter(username='gone').delete()",
    )
    refused = httpx.post(f"{node.url}/raw/u/a", content=b"2", headers=bearer(access))
    assert refused.status_code == 401
    assert refused.json()["error"] == "user_not_found"
    assert httpx.get(f"{node.url}/raw/u/a").content == b"1"
