"""``manage.py spread_export [PREFIX] [--output FILE] > backup``: a consistent snapshot (NDJSON,
gzip when the file name ends in .gz) of every event under PREFIX, with a progress bar on stderr."""

from __future__ import annotations

import contextlib
import gzip
import sys
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from spread_core.exceptions import SpreadError
from spread_core.paths import TopicPath

from ...snapshot import digest, export


class Command(BaseCommand):
    help = "Write a snapshot of every event under PREFIX (default: everything) to stdout or --output."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix", nargs="?", default="")
        parser.add_argument("--output", help="write here instead of stdout (.gz: compressed)")
        parser.add_argument("--no-progress", action="store_true")

    @staticmethod
    def open_output(name: str | None, stack: contextlib.ExitStack) -> TextIO:
        if name is None:
            return sys.stdout
        if name.endswith(".gz"):
            return stack.enter_context(gzip.open(name, "wt", encoding="utf-8"))
        return stack.enter_context(open(name, "w", encoding="utf-8"))

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            prefix = TopicPath.from_canonical(options["prefix"].strip("/"))
        except SpreadError as exc:
            raise CommandError(exc.detail) from exc
        with contextlib.ExitStack() as stack:
            out = self.open_output(options["output"], stack)
            bar = stack.enter_context(tqdm(unit=" events", file=sys.stderr, disable=options["no_progress"]))
            count = export(prefix, out, bar.update)
        sys.stderr.write(f"Exported {count} event(s); digest {digest(prefix)}\n")
