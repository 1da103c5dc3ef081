"""``manage.py spread_peer add URL --token T [--prefix P ...]``, ``spread_peer list``,
``spread_peer remove URL``: manage this node's outgoing replication links (a running node applies
changes within a second, without a restart)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from spread_core.models import Peer
from spread_core.replication.peers import InvalidPeer, ensure_remote, remove_remote
from spread_core.replication.status import link_status


class Command(BaseCommand):
    help = "Add, list or remove this node's replication peers."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        add = actions.add_parser("add", help="add or update the link to a peer")
        add.add_argument("url", help="base URL of the peer node, e.g. http://10.0.0.2:8000/")
        add.add_argument("--token", required=True, help="node credential from the peer (spread_token --node)")
        add.add_argument(
            "--prefix", nargs="*", default=None, metavar="P", help="prefixes (default everything)"
        )
        remove = actions.add_parser("remove", help="remove the link to a peer")
        remove.add_argument("url")
        listing = actions.add_parser("list", help="list the links and their state")
        listing.add_argument("--json", action="store_true", help="print the status JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["action"] == "add":
                peer = ensure_remote(options["url"], options["token"], options["prefix"])
                self.stdout.write(f"Peer {peer.url} replicates {', '.join(p or '/' for p in peer.prefixes)}")
            elif options["action"] == "remove":
                if not remove_remote(options["url"]):
                    raise CommandError(f"No peer {options['url']!r}.")
                self.stdout.write(f"Removed peer {options['url']}")
            else:
                self.list(as_json=options["json"])
        except InvalidPeer as exc:
            raise CommandError(exc.detail) from exc

    def list(self, *, as_json: bool) -> None:
        status = link_status()
        if as_json:
            self.stdout.write(json.dumps(status, indent=2))
            return
        if not Peer.objects.exists():
            self.stdout.write("No peers.")
        for peer in status["peers"]:
            state = "connected" if peer["connected"] else "disconnected"
            prefixes = ", ".join(p or "/" for p in peer["prefixes"])
            line = f"{peer['url']}  [{prefixes}]  {state}  node={peer['remote_node'] or '?'}"
            line += f"  cursor={peer['cursor']}  lag={peer['lag_events']} events/{peer['lag_seconds']:.1f} s"
            if peer["last_error"]:
                line += f"  error: {peer['last_error']}"
            self.stdout.write(line)
