"""``manage.py spread_import FILE`` (or ``-`` for stdin): store the events of a snapshot made by
``spread_export``. Idempotent, and merged by last-writer-wins: safe on a live or another node."""

from __future__ import annotations

import contextlib
import gzip
import io
import sys
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from spread_core.exceptions import SpreadError
from spread_core.paths import TopicPath

from ...snapshot import digest, import_snapshot

GZIP_MAGIC = b"\x1f\x8b"


def open_snapshot(name: str, stack: contextlib.ExitStack) -> TextIO:
    """The snapshot's lines as text, gunzipped when it starts with the gzip magic; every layer
    is closed with ``stack``."""
    raw: Any = sys.stdin.buffer if name == "-" else stack.enter_context(open(name, "rb"))  # noqa: SIM115
    buffered: Any = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        buffered = stack.enter_context(gzip.GzipFile(fileobj=buffered))
    return stack.enter_context(io.TextIOWrapper(buffered, encoding="utf-8"))


class Command(BaseCommand):
    help = "Import a snapshot written by spread_export (plain or gzip)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="snapshot file, or - for stdin")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with contextlib.ExitStack() as stack:
                snapshot = open_snapshot(options["file"], stack)
                bar = stack.enter_context(
                    tqdm(unit=" events", file=sys.stderr, disable=options["no_progress"])
                )
                report = import_snapshot(snapshot, bar.update)
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}") from exc
        except SpreadError as exc:
            raise CommandError(exc.detail) from exc
        sys.stderr.write(
            f"Imported {report.events} event(s): {report.stored} stored, {report.existing} already here; "
            f"digest of everything {digest(TopicPath(()))}\n"
        )
