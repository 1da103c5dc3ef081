"""The smallest streaming upload receiver: the baseline of the large-values benchmark.

``POST /<anything>`` writes the request body, message by message as the server hands it over, to a
new file in ``$BENCH_UPLOAD_DIR`` (default: the system's temporary directory), fsyncs it once at the
end (a Spread upload is durable when it answers, too) and answers 200 with ``{"size": N}``. Any
other request answers 200 (readiness probe). No hashing, no database, no authentication: what is
left is the cost of the ASGI server, the client and the disk, on this machine.

Run it on the node's ASGI server: ``python -m uvicorn bench.baseline_upload:app --port N`` (or
``daphne -p N bench.baseline_upload:app``).
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

UPLOAD_DIR_VARIABLE = "BENCH_UPLOAD_DIR"
OK = b'{"status":"ok"}'


async def respond(send: Any, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def receive_into_file(receive: Any) -> int | None:
    """Write the body to a new file as it arrives; its size, or None if the client went away."""
    directory = os.environ.get(UPLOAD_DIR_VARIABLE) or tempfile.gettempdir()
    size = 0
    with tempfile.NamedTemporaryFile(dir=directory, prefix="upload-", delete=False) as target:
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            # A blocking write is what a minimal receiver does; it lands in the page cache.
            target.write(message.get("body", b""))
            size += len(message.get("body", b""))
            more = message.get("more_body", False)
        target.flush()
        os.fsync(target.fileno())
    return size


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["method"] != "POST":
        await respond(send, OK)
        return
    size = await receive_into_file(receive)
    if size is not None:
        await respond(send, json.dumps({"size": size}).encode())
