"""``manage.py spread_node --bind HOST:PORT``: migrate, then run the whole node: the ASGI server
(uvicorn) and the connector that keeps the outgoing peer links up, in one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
from typing import Any

import uvicorn
from channels.routing import get_default_application
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from uvicorn.config import LOG_LEVELS

from spread_core.blobs import blob_store
from spread_core.conf import spread_settings
from spread_core.replication.link import Connector
from spread_core.store import abort_stale_uploads

DEFAULT_BIND = "127.0.0.1:8000"


def parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"--bind must be HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Command(BaseCommand):
    help = (
        "Apply pending migrations, then serve this Spread node with uvicorn, an ASGI server that "
        "streams request bodies to the application as they arrive."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default=DEFAULT_BIND, help=f"HOST:PORT (default {DEFAULT_BIND})")
        parser.add_argument("--no-migrate", action="store_true", help="Do not apply migrations.")
        parser.add_argument("--log-level", default="warning", choices=LOG_LEVELS, help="uvicorn log level.")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = parse_bind(options["bind"])
        if settings.DEBUG and not is_loopback(host):
            # DEBUG pages show settings, SQL and tracebacks to whoever triggers an error.
            raise CommandError(
                f"Refusing to serve {host} with DEBUG on: DEBUG is for a loopback bind only "
                "(unset DEBUG, or bind 127.0.0.1)."
            )
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        aborted = abort_stale_uploads()
        if aborted:
            self.stdout.write(f"Aborted {aborted} upload(s) left unfinished by a previous run.")
        swept = blob_store().sweep()
        if swept:
            self.stdout.write(f"Removed {swept} blob file(s) of no live event, left by a previous run.")
        config = uvicorn.Config(
            get_default_application(),
            host=host,
            port=port,
            lifespan="off",
            log_level=options["log_level"],
            # uvicorn logs each request at INFO: below that level, skip building the record
            access_log=LOG_LEVELS[options["log_level"]] <= logging.INFO,
            timeout_graceful_shutdown=5,
            timeout_keep_alive=spread_settings.KEEP_ALIVE_TIMEOUT,
            ws_max_size=spread_settings.WS_MAX_FRAME,
            ws_per_message_deflate=spread_settings.WS_PER_MESSAGE_DEFLATE,
            ws_ping_interval=None,  # Spread sends its own heartbeats
        )
        self.stdout.write(
            f"Spread node {spread_settings.NODE_NAME!r} serving http://{options['bind']}/ "
            f"(admin at /admin/, API docs at /api/docs/)"
        )
        self.stdout.flush()
        tune_garbage_collector()
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(serve(uvicorn.Server(config)))


def tune_garbage_collector() -> None:
    """Apply ``GC_THRESHOLDS`` and ``GC_FREEZE`` (profiles of fan-out found 20-25% of the time in
    collections, pauses up to 221 ms, most of it walking objects that live as long as the node)."""
    thresholds = spread_settings.GC_THRESHOLDS
    if thresholds is not None:
        gc.set_threshold(*thresholds)
    if spread_settings.GC_FREEZE:
        gc.collect()
        gc.freeze()


async def serve(server: uvicorn.Server) -> None:
    """The ASGI server and, unless SPREAD["CONNECTOR"] is off, the peer links beside it."""
    connector = asyncio.ensure_future(Connector().run()) if spread_settings.CONNECTOR else None
    try:
        await server.serve()
    finally:
        if connector is not None:
            connector.cancel()
            with contextlib.suppress(BaseException):
                await connector
