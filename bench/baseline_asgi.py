"""The smallest ASGI application: reads the request body, answers 200 with a tiny JSON body; and
the uvicorn command line that serves it (or another baseline) as ``spread_node`` serves the node.

Served by the same uvicorn as the node, it is the physical limit of server + client on this
machine; node figures are quoted as ratios against it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

BODY = b'{"status":"ok"}'
REPO = Path(__file__).resolve().parent.parent


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": BODY})


def uvicorn_command(app: str, port: int) -> list[str]:
    """The command that serves ``app`` (``module:attribute`` under bench/'s parent) on
    127.0.0.1:``port`` with uvicorn configured as ``manage.py spread_node`` configures it: event
    loop and HTTP parser "auto" (uvloop and httptools when installed), no lifespan, log level
    warning (no access log), a 5 s graceful shutdown. Its websocket options do not touch HTTP."""
    return [
        *(sys.executable, "-m", "uvicorn", app, "--app-dir", str(REPO)),
        *("--host", "127.0.0.1", "--port", str(port), "--loop", "auto", "--http", "auto"),
        *("--lifespan", "off", "--log-level", "warning", "--timeout-graceful-shutdown", "5"),
    ]


def uvicorn_stack() -> str:
    """The server stack ``uvicorn_command`` (and ``spread_node``) runs here, e.g.
    ``uvicorn 0.54.0, uvloop, httptools``."""
    import uvicorn

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn {uvicorn.__version__}, {loop}, {parser}"
