"""``manage.py spread_token --uid NAME [--read P ...] [--write P ...]``: print a scoped token;
``spread_token --node NAME [--prefix P ...]``: print a node credential for the peer ``NAME``."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from spread_core.conf import spread_settings
from spread_core.exceptions import InvalidPath
from spread_core.paths import TopicPath

from ...tokens import device_token, node_token

#: A link must not stop by itself: node credentials last ten years unless --lifetime says less.
NODE_CREDENTIAL_LIFETIME = 10 * 365 * 24 * 3600


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
        "(repeat them; give the option with no prefix to forbid reads/writes entirely). With --node, "
        "print the credential a peer node uses to replicate with this one (--prefix limits it)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        who = parser.add_mutually_exclusive_group(required=True)
        who.add_argument("--uid", help="writer identity recorded on events")
        who.add_argument("--node", help="NODE_NAME of a peer: print its replication credential")
        parser.add_argument(
            "--prefix",
            nargs="*",
            metavar="PREFIX",
            help="with --node: prefixes it may replicate (default all)",
        )
        parser.add_argument("--read", nargs="*", metavar="PREFIX", help="prefixes it may read")
        parser.add_argument("--write", nargs="*", metavar="PREFIX", help="prefixes it may write")
        parser.add_argument(
            "--lifetime",
            type=int,
            default=None,
            help="seconds (default SPREAD['DEVICE_TOKEN_LIFETIME'])",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        uid = options["uid"] or options["node"]
        if not uid or len(uid.encode()) > 255:
            raise CommandError("--uid / --node must be 1 to 255 bytes.")
        if options["node"]:
            if options["read"] is not None or options["write"] is not None:
                raise CommandError("A node credential takes --prefix, not --read/--write.")
            token = node_token(uid, _canonical_prefixes(options["prefix"]))
        else:
            if options["prefix"] is not None:
                raise CommandError("--prefix goes with --node; use --read/--write for --uid.")
            token = device_token(
                uid, read=_canonical_prefixes(options["read"]), write=_canonical_prefixes(options["write"])
            )
        default = NODE_CREDENTIAL_LIFETIME if options["node"] else spread_settings.DEVICE_TOKEN_LIFETIME
        lifetime = options["lifetime"] or default
        token.set_exp(lifetime=timedelta(seconds=lifetime))
        self.stdout.write(str(token))
