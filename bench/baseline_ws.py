"""The smallest websocket broadcaster: the baseline of the fan-out and catch-up benchmarks.

Served by the same uvicorn as the node, with the node's websocket settings, and speaking the
subset of the node's protocol the benchmark client reads:

- ``/ws/<anything>``: accept, send ``?catchup=K`` update frames (paths ``cu/00000``...), then
  ``{"type": "synced", "iteration": N}``; then every published message, until the client leaves.
- ``POST /raw/<path>``: turn the body into an update frame shaped like a node event (same fields,
  similar size), serialise it once and send it to every connected websocket in turn; answer 200.
- any other HTTP request: 200 (readiness probe).

No database, no authentication, no per-subscriber state: what is left is the cost of uvicorn,
websocket framing and the client, on this machine. Run it with ``python -m bench.baseline_ws
--port N`` (uvicorn with the options ``manage.py spread_node`` uses).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

SENDERS: dict[int, Any] = {}  # connection id -> its ASGI send callable
STATE = {"iteration": 0, "next_id": 0}
OK = b'{"status":"ok"}'
ORIGIN = "dev-" + "0" * 24  # as long as a device uid in the node's events


def event_frame(path: str, value: str, iteration: int) -> str:
    """An update frame with the fields and field lengths of a node event."""
    event = {
        "id": uuid.uuid4().hex,
        "path": path,
        "iteration": iteration,
        "from": ORIGIN,
        "date": time.time_ns() // 1000,
        "content_type": "application/octet-stream",
        "size": len(value),
        "complete": True,
        "deleted": False,
        "value": value,
    }
    return json.dumps({"type": "update", "event": event}, separators=(",", ":"))


async def websocket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    catchup = int(query.get("catchup", ["0"])[-1])
    value = "x" * int(query.get("size", ["100"])[-1])
    for index in range(catchup):
        await send({"type": "websocket.send", "text": event_frame(f"cu/{index:05d}", value, index + 1)})
    await send({"type": "websocket.send", "text": json.dumps({"type": "synced", "iteration": catchup})})
    key = STATE["next_id"]
    STATE["next_id"] += 1
    SENDERS[key] = send
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        SENDERS.pop(key, None)


async def http(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    path = scope["path"]
    if scope["method"] == "POST" and path.startswith("/raw/"):
        STATE["iteration"] += 1
        frame = {"type": "websocket.send", "text": event_frame(path[5:], body.decode(), STATE["iteration"])}
        for key, sender in list(SENDERS.items()):
            try:
                await sender(frame)
            except Exception:  # the client left while we were sending
                SENDERS.pop(key, None)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(OK)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": OK})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await websocket(scope, receive, send)
    elif scope["type"] == "http":
        await http(scope, receive, send)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
        ws_max_size=1024 * 1024,
        ws_per_message_deflate=False,  # as spread_node by default (SPREAD["WS_PER_MESSAGE_DEFLATE"])
        ws_ping_interval=None,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
