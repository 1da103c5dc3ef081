"""``manage.py spread_rollback PREFIX --to ITERATION|DATE [--dry-run] [--origin NAME]``: give every
topic under PREFIX its value as of then, as new events, in one transaction."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from spread_core.exceptions import SpreadError
from spread_core.paths import TopicPath

from ...rollback import parse_point, plan_rollback, rollback


class Command(BaseCommand):
    help = (
        "Roll every topic under PREFIX ('' for everything) back to its value as of an iteration "
        "(a number) or an event date (ISO, UTC unless it says otherwise). Topics created after "
        "it get tombstones. One transaction; the rollback is itself new events in the history."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix")
        parser.add_argument("--to", required=True, help="iteration, or date like 2026-11-26T10:00:00")
        parser.add_argument("--dry-run", action="store_true", help="only list what would change")
        parser.add_argument("--origin", default="spread_rollback", help="origin of the new events")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            prefix = TopicPath.from_canonical(options["prefix"].strip("/"))
            point = parse_point(options["to"])
        except SpreadError as exc:
            raise CommandError(exc.detail) from exc
        plan = plan_rollback(prefix, **point)
        for change in plan:
            target = f"value of iteration {change.target.iteration}" if change.target else "deleted"
            self.stdout.write(f"{change.path}: {target}")
        if options["dry_run"]:
            self.stdout.write(f"{len(plan)} topic(s) would change (dry run: nothing written).")
            return
        reports = rollback(prefix, origin=options["origin"], **point)
        self.stdout.write(f"{len(reports)} topic(s) rolled back.")
