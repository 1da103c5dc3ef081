"""``manage.py spread_token --uid NAME [--read P ...] [--write P ...]``: print a scoped token."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from spread_core.conf import spread_settings
from spread_core.exceptions import InvalidPath
from spread_core.paths import TopicPath

from ...tokens import device_token


def _canonical_prefixes(prefixes: list[str] | None) -> list[str] | None:
    if prefixes is None:
        return None
    try:
        return [TopicPath.from_canonical(prefix.strip("/")).canonical for prefix in prefixes]
    except InvalidPath as exc:
        raise CommandError(f"Invalid prefix: {exc.detail}") from exc


class Command(BaseCommand):
    help = (
        "Print a token whose writes have origin --uid. --read/--write restrict it to path prefixes "
        "(repeat them; give the option with no prefix to forbid reads/writes entirely)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--uid", required=True, help="writer identity recorded on events")
        parser.add_argument("--read", nargs="*", metavar="PREFIX", help="prefixes it may read")
        parser.add_argument("--write", nargs="*", metavar="PREFIX", help="prefixes it may write")
        parser.add_argument(
            "--lifetime",
            type=int,
            default=None,
            help="seconds (default SPREAD['DEVICE_TOKEN_LIFETIME'])",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        uid = options["uid"]
        if not uid or len(uid.encode()) > 255:
            raise CommandError("--uid must be 1 to 255 bytes.")
        token = device_token(
            uid, read=_canonical_prefixes(options["read"]), write=_canonical_prefixes(options["write"])
        )
        lifetime = options["lifetime"] or spread_settings.DEVICE_TOKEN_LIFETIME
        token.set_exp(lifetime=timedelta(seconds=lifetime))
        self.stdout.write(str(token))
