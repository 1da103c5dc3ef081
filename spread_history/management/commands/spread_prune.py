"""``manage.py spread_prune [--dry-run]``: apply ``SPREAD["RETENTION"]`` (for cron): archive or
delete the past events it lets go; a topic's current event always stays."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from tqdm import tqdm

from ...retention import Policy, prune


class Command(BaseCommand):
    help = "Archive (SPREAD['RETENTION']['ARCHIVE_DIR']) or delete the events the retention policy lets go."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="only count them")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        policy = Policy.from_settings()
        if policy.keeps_everything:
            self.stdout.write("SPREAD['RETENTION'] keeps everything: nothing to prune.")
            return
        if options["dry_run"]:
            self.stdout.write(f"{prune(policy, dry_run=True)} event(s) would be pruned (dry run).")
            return
        with tqdm(unit=" events", file=sys.stderr, disable=options["no_progress"]) as bar:
            removed = prune(policy, progress=bar.update)
        where = f"archived in {policy.archive_dir}" if policy.archive_dir else "deleted"
        self.stdout.write(f"{removed} event(s) {where}.")
