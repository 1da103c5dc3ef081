"""``manage.py spread_playback PREFIX [--from P] [--to P] [--into PREFIX] [--speed 10]``: replay
the events of a subtree in order, paced by their dates, into another prefix (new writes that its
subscribers and peers receive) or, without --into, as JSON lines on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from spread_core.exceptions import SpreadError
from spread_core.models import Event
from spread_core.paths import TopicPath

from ...playback import Player, events_between
from ...rollback import parse_point


class Command(BaseCommand):
    help = (
        "Replay the events under PREFIX between --from (exclusive) and --to (inclusive), each an "
        "iteration or a date, at --speed times their original pace (0: no pauses)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix")
        parser.add_argument("--from", dest="start", default="", help="iteration or date (default: the start)")
        parser.add_argument("--to", dest="end", default="", help="iteration or date (default: now)")
        parser.add_argument("--into", help="write the events under this prefix instead of printing them")
        parser.add_argument("--speed", type=float, default=1.0, help="pace factor (default 1, 0 = no pauses)")
        parser.add_argument("--origin", default="spread_playback", help="origin of the replayed writes")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            prefix = TopicPath.from_canonical(options["prefix"].strip("/"))
            into = (
                TopicPath.from_canonical(options["into"].strip("/")) if options["into"] is not None else None
            )
            start = parse_point(options["start"]) if options["start"] else {}
            end = parse_point(options["end"]) if options["end"] else {}
        except SpreadError as exc:
            raise CommandError(exc.detail) from exc
        if into is not None and (prefix.covers(into) or into.covers(prefix)):
            raise CommandError("--into must not overlap PREFIX (the replay would replay itself).")
        events = events_between(prefix, start, end)
        player = Player(prefix, into, speed=max(options["speed"], 0.0), origin=options["origin"])
        with tqdm(
            total=events.count(), unit=" events", file=sys.stderr, disable=options["no_progress"]
        ) as bar:

            def done(event: Event) -> None:
                if into is None:
                    self.stdout.write(json.dumps(event.as_json()))
                bar.update(1)

            count = player.play(events, done)
        target = f"into {into.canonical or '/'}" if into is not None else "to stdout"
        sys.stderr.write(f"Replayed {count} event(s) {target}.\n")
