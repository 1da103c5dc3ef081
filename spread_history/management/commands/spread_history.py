"""``manage.py spread_history PATH [--after N] [--limit N] [--json]``: a topic's timeline."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from spread_core.clock import MICROSECONDS
from spread_core.exceptions import SpreadError
from spread_core.history import timeline
from spread_core.paths import TopicPath


class Command(BaseCommand):
    help = "Print every event of a topic (iteration, date, origin, size, status), oldest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="canonical topic path, e.g. sensors/plant-3/temp")
        parser.add_argument("--after", type=int, default=0, help="only events after this iteration")
        parser.add_argument("--limit", type=int, default=1000, help="at most this many events (max 1000)")
        parser.add_argument("--json", action="store_true", help="print the JSON of GET /history/<path>")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            page = timeline(
                TopicPath.from_canonical(options["path"]), after=options["after"], limit=options["limit"]
            )
        except SpreadError as exc:
            raise CommandError(exc.detail) from exc
        if page.topic is None:
            raise CommandError(f"No event was ever stored at {options['path']!r}.")
        if options["json"]:
            self.stdout.write(json.dumps(page.as_json(), indent=2))
            return
        self.stdout.write(f"{'iteration':>9}  {'date (UTC)':26}  {'origin':20}  {'size':>10}  status")
        for event in page.events:
            date = datetime.fromtimestamp(event.date / MICROSECONDS, tz=UTC).isoformat(
                timespec="microseconds"
            )
            status = event.history_status(page.topic.current_id)
            self.stdout.write(
                f"{event.iteration:>9}  {date[:26]:26}  {event.origin[:20]:20}  {event.size:>10}  {status}"
            )
        if page.next_after:
            self.stdout.write(f"… more: --after {page.next_after}")
