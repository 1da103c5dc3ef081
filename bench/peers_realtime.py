"""``python -m bench.peers_realtime``: fan-out (suite 3) and catch-up (suite 4) side by side on
Spread and on the peer systems people compare it with, each started here on a free loopback port
with a temporary data directory (``bench.peers``) and stopped afterwards, also on error. A peer
whose server is not installed is skipped with a JSON line saying so.

- ``peers_fanout``: one publisher, N subscribers (default 100, then 1,000) on a prefix; a paced
  phase (``--messages`` at ``--rate`` per second: delay is the figure), then a burst
  (``--burst`` back to back: deliveries/s is the figure), as in ``bench.fanout``, which drives
  both phases and computes the figures. Delay = receive time - the time the publisher sent,
  both read from ``time.perf_counter`` in this one client process. Per system and N: delay
  p50/p99/max, deliveries/s, deliveries missing after a 30 s drain, duplicates.

  - spread: websockets on ``/ws/fan?since=0``, publisher POSTs ``/raw/fan/m<i>``;
  - nats: core NATS, one connection per subscriber subscribed to ``fan.>``, publisher publishes
    ``fan.m<i>`` and flushes (a round trip to the server, as each other publisher waits for its
    reply);
  - redis: pub/sub, one connection per subscriber with ``PSUBSCRIBE fan/*``, ``PUBLISH fan/m<i>``;
  - etcd: a watch on the prefix ``fan/`` per subscriber, through etcd's HTTP JSON gateway
    (``POST /v3/watch``, streamed JSON lines, one HTTP connection per watcher), publisher
    ``POST /v3/kv/put``. The gateway, not gRPC: no maintained Python gRPC etcd client exists
    here; the gateway turns each HTTP watch into a gRPC watch stream inside etcd. The client is a
    minimal HTTP/1.1 one over asyncio streams (``bench.realtime_clients.Http``): with httpx, this
    process was the bottleneck.

  Each record has ``ratio_p99_to_etcd`` and ``ratio_deliveries_to_etcd`` when etcd ran (the
  issue's targets: Spread's p99 at most 2x etcd's, deliveries/s at least 1.0x, none missing).
- ``peers_catchup``: ``--topics`` keys of 100 B under a prefix (loading is not measured), then the
  time a new subscriber takes from connecting until it holds all of them (median of
  ``--catchup-repeats``), and the items it got (should equal the topic count):

  - spread: websocket ``/ws/cu?since=0`` until ``synced`` (topics written by
    ``bench.fanout.load_topics``); ``spread-batch`` the same with ``&batch=1`` (many events per
    frame), ``spread-orm`` with the feed's reads through the ORM (``FEED_PLAIN_SQL`` off),
    ``spread-deflate`` with websocket compression offered (``WS_PER_MESSAGE_DEFLATE``);
  - nats-kv: JetStream KV, a new connection, ``watch("cu.>")`` (every key of the bucket) until
    nats-py's marker that the initial values are delivered;
  - etcd-watch: one watch on the prefix ``cu/`` from revision 1 (the like-for-like of the two
    above), until the event at the store's head revision. Each key has its own revision, as if
    written by independent clients; etcd seems to feed a lagging watcher about 1,000 revisions
    per 100 ms round, so this time grows with revisions, not bytes;
  - etcd-range: one range request on the prefix ``cu/`` (how etcd clients read a prefix).

  Redis pub/sub keeps no history, so it has no catch-up here. Each record has
  ``ratio_to_nats_kv`` when NATS ran (the issue's target: Spread no slower than NATS KV).

The peers' clients live in ``bench.realtime_clients``; Spread's are ``bench.fanout``'s.
Every figure comes from the same run on the same (shared, noisy) machine: compare ratios. Loops
are bounded in count and time and target only 127.0.0.1. Results are appended to
``<results-dir>/peers_fanout.jsonl`` and ``peers_catchup.jsonl``; ``--plot DIR`` draws them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import fanout, peers
from bench import realtime_clients as clients
from bench.options import add_shared_option

SUITES = ("peers_fanout", "peers_catchup")
#: Variants of Spread: SPREAD options and query of each, so one run measures each change on and
#: off: batched frames (catch-up only), the feed's reads through the ORM, websocket compression,
#: every subscription reading for itself (no pushed pages), Python's own collector thresholds.
SPREAD_VARIANTS: dict[str, tuple[dict[str, Any], str]] = {
    "spread": ({}, ""),
    "spread-batch": ({}, "&batch=1"),
    "spread-orm": ({"FEED_PLAIN_SQL": False}, ""),
    "spread-deflate": ({"WS_PER_MESSAGE_DEFLATE": True}, ""),
    "spread-no-push": ({"FEED_PUSH": False}, ""),
    "spread-python-gc": ({"GC_THRESHOLDS": None}, ""),
}
#: Spread on the channels-redis layer (fan-out only): node processes sharing one database, and
#: SPREAD options (doorbells one per subscriber: the layer's messages before LAYER_DOORBELLS).
REDIS_VARIANTS: dict[str, tuple[int, dict[str, Any]]] = {
    "spread-redis": (1, {}),
    "spread-redis-2": (2, {}),
    "spread-redis-2-per-subscriber": (2, {"LAYER_DOORBELLS": "subscriber"}),
}
SYSTEMS = ("etcd", "nats", "redis", *SPREAD_VARIANTS, *REDIS_VARIANTS)
#: What ``make bench`` runs (the other variants by name, with ``--realtime-systems``).
DEFAULT_SYSTEMS = ("etcd", "nats", "redis", "spread", "spread-batch", "spread-no-push")
SPREAD_COLOUR, PEER_COLOUR = "#417690", "#999"
PEERS: dict[str, tuple[type[peers.System], type[clients.FanoutPeer]]] = {
    "etcd": (peers.Etcd, clients.EtcdFanout),
    "nats": (peers.NatsKV, clients.NatsFanout),
    "redis": (peers.Redis, clients.RedisFanout),
}


# Running systems ----------------------------------------------------------------------------------
def _skipped(suite: str, system: str, reason: str) -> None:
    print(json.dumps({"suite": suite, "system": system, "skipped": reason}), flush=True)


@contextlib.contextmanager
def _started(system: Any) -> Iterator[Any]:
    """Start a peer (a ``bench.peers`` system); stop it however the block ends."""
    try:
        system.start()
        yield system
    finally:
        system.stop()


def _emit(records: list[dict[str, Any]], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("a") as results:
        for record in records:
            print(json.dumps(record), flush=True)
            results.write(json.dumps(record) + "\n")


@contextlib.contextmanager
def _workdir(args: argparse.Namespace) -> Iterator[Path]:
    if args.log_dir:
        Path(args.log_dir).mkdir(parents=True, exist_ok=True)
        yield Path(args.log_dir)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            yield Path(tmp)


def _fresh(workdir: Path, label: str) -> Path:
    """A new directory per started system, so no run sees the data of another."""
    return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=workdir))


def _fanout_records(
    system: str, transport: str, count: int, result: dict[str, Any], common: dict[str, Any]
) -> list[dict[str, Any]]:
    records = []
    for phase in ("paced", "burst"):
        if phase not in result:
            continue
        figures = dict(result[phase])
        if "post_errors" in figures:
            figures["publish_errors"] = figures.pop("post_errors")
        records.append(
            {
                **common,
                "system": system,
                "transport": transport,
                "subscribers": count,
                "measurement": phase,
                **figures,
                "subscribe_seconds": result["subscribe"]["seconds"],
                "subscribed": result["subscribe"]["synced"],
                "problems": result["problems"],
            }
        )
    return records


def add_fanout_ratios(records: list[dict[str, Any]]) -> None:
    """Each record's p99 delay and deliveries/s as ratios of etcd's for the same N and phase."""
    etcd = {(r["subscribers"], r["measurement"]): r for r in records if r["system"] == "etcd"}
    for record in records:
        base = etcd.get((record["subscribers"], record["measurement"]))
        if base is None:
            continue
        for key, name in (
            ("p99_ms", "ratio_p99_to_etcd"),
            ("deliveries_per_second", "ratio_deliveries_to_etcd"),
        ):
            if record.get(key) is not None and base.get(key):
                record[name] = round(record[key] / base[key], 3)


def run_fanout(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The fan-out suite on every system of ``args.realtime_systems``, for each N of
    ``args.subscribers``; return the records (also printed and appended to peers_fanout.jsonl)."""
    fanout.raise_fd_limit(2 * max(args.subscribers) + 512)  # before the servers start: they inherit it
    common = {"suite": "peers_fanout", "run": fanout.now_iso()}
    records: list[dict[str, Any]] = []
    with _workdir(args) as workdir:
        for count in args.subscribers:
            batch: list[dict[str, Any]] = []
            for name in args.realtime_systems:
                try:
                    batch += _fanout_system(name, count, args, workdir, common)
                except Exception as exc:  # one system failing must not hide the others' figures
                    batch.append({**common, "system": name, "subscribers": count, "error": repr(exc)[:500]})
            add_fanout_ratios(batch)
            _emit(batch, Path(args.results_dir) / "peers_fanout.jsonl")
            records += batch
    return records


def _fanout_system(
    name: str, count: int, args: argparse.Namespace, workdir: Path, common: dict[str, Any]
) -> list[dict[str, Any]]:
    if name in REDIS_VARIANTS:
        return _fanout_on_redis(name, count, args, workdir, common)
    if name in SPREAD_VARIANTS:
        options, query = SPREAD_VARIANTS[name]
        if query:
            _skipped("peers_fanout", name, "a catch-up variant")
            return []
        server = fanout.start_node(_fresh(workdir, name), f"fanout-{count}", options)
        try:
            result = asyncio.run(fanout.fanout_run(server, count, args.messages, args.rate, args.burst))
        finally:
            server.stop()
        result["problems"]["server_log"] = server.log_problems()
        transport = "websocket /ws/fan?since=0; POST /raw/fan/m<i>"
        return [{**r, "options": options} for r in _fanout_records(name, transport, count, result, common)]
    system_class, peer_class = PEERS[name]
    if not system_class.available():
        _skipped("peers_fanout", name, f"{system_class.binary} is not installed")
        return []
    with _started(system_class(_fresh(workdir, name))) as system:
        peer = peer_class(system)
        result = asyncio.run(clients.peer_fanout_run(peer, count, args.messages, args.rate, args.burst))
    return _fanout_records(name, peer_class.transport, count, result, common)


def _fanout_on_redis(
    name: str, count: int, args: argparse.Namespace, workdir: Path, common: dict[str, Any]
) -> list[dict[str, Any]]:
    """Spread on the channels-redis layer (a private Redis): one node process, or two sharing one
    database with the subscribers spread over both (the publisher POSTs to the first)."""
    if not peers.Redis.available():
        _skipped("peers_fanout", name, "redis-server is not installed")
        return []
    processes, options = REDIS_VARIANTS[name]
    directory = _fresh(workdir, name)
    with _started(peers.Redis(_fresh(directory, "redis"))) as redis:
        redis_url = f"redis://127.0.0.1:{redis.port}/0"
        first = fanout.start_node(directory, f"fanout-{count}", options, REDIS_URL=redis_url)
        nodes = [first]
        try:
            nodes += [
                fanout.start_node(
                    directory,
                    f"fanout-{count}-{i}",
                    options,
                    DATABASE_URL=first.database_url,
                    REDIS_URL=redis_url,
                )
                for i in range(1, processes)
            ]
            result = asyncio.run(
                fanout.fanout_run(first, count, args.messages, args.rate, args.burst, subscribe_to=nodes)
            )
        finally:
            for node in nodes:
                node.stop()
    result["problems"]["server_log"] = [node.log_problems() for node in nodes]
    transport = f"websocket /ws/fan?since=0 over {processes} node process(es) on Redis; POST to the first"
    return [
        {**r, "processes": processes, "layer": "redis", "options": options}
        for r in _fanout_records(name, transport, count, result, common)
    ]


# Catch-up -----------------------------------------------------------------------------------------
def _catchup_record(
    system: str, method: str, runs: list[dict[str, Any]], load: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    return {
        "system": system,
        "method": method,
        "topics": args.topics,
        "value_bytes": len(fanout.VALUE),
        "repeats": len(runs),
        "seconds_median": round(statistics.median(r["seconds"] for r in runs), 3),
        "seconds_each": [r["seconds"] for r in runs],
        "items": min(r["items"] for r in runs),
        "items_each": [r["items"] for r in runs],
        "updates_each": [r["updates"] for r in runs],
        "complete": all(r["items"] == args.topics and not r["error"] for r in runs),
        "errors": [r["error"] for r in runs if r["error"]],
        "load": load,
    }


def _catchup_system(name: str, args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    repeats = range(args.catchup_repeats)
    if name in REDIS_VARIANTS:
        _skipped("peers_catchup", name, "a fan-out variant (the catch-up reads the same database)")
        return []
    if name in SPREAD_VARIANTS:
        options, query = SPREAD_VARIANTS[name]
        node = fanout.start_node(_fresh(workdir, name), "catchup", options)
        try:
            load = fanout.load_topics(node.database_url, args.topics)
            url = f"{node.ws_url}/ws/{fanout.CATCHUP_PREFIX}?since=0{query}"
            runs = [asyncio.run(fanout.catch_up(url, node.headers)) for _ in repeats]
        finally:
            node.stop()
        for run in runs:  # the time to ``synced``, as the peers' times end when all keys are in
            run.update(seconds=run["seconds_to_synced"] or run["seconds"], items=run["distinct_topics"])
        method = f"websocket /ws/{fanout.CATCHUP_PREFIX}?since=0{query}"
        record = _catchup_record(name, method, runs, load, args)
        record["options"] = options
        record["out_of_order_max"] = max(run["out_of_order"] for run in runs)
        record["server_log"] = node.log_problems()
        return [record]
    if name == "redis":
        _skipped("peers_catchup", name, "Redis pub/sub keeps no history to catch up from")
        return []
    system_class = peers.NatsKV if name == "nats" else peers.Etcd
    if not system_class.available():
        _skipped("peers_catchup", name, f"{system_class.binary} is not installed")
        return []
    with _started(system_class(_fresh(workdir, name))) as system:
        if name == "nats":
            load = asyncio.run(clients.load_nats(system, args.topics))
            runs = [asyncio.run(clients.timed(clients.nats_catch_up(system.port))) for _ in repeats]
            method = f"JetStream KV watch {fanout.CATCHUP_PREFIX}.> to the initial-values marker"
            return [_catchup_record("nats-kv", method, runs, load, args)]
        load = asyncio.run(clients.load_etcd(system.port, args.topics))
        watch = [
            asyncio.run(clients.timed(clients.etcd_catch_up(system.port, load["head"]))) for _ in repeats
        ]
        whole = [asyncio.run(clients.timed(clients.etcd_range(system.port))) for _ in repeats]
    prefix = f"{fanout.CATCHUP_PREFIX}/"
    return [
        _catchup_record("etcd-watch", f"HTTP gateway watch on {prefix} from revision 1", watch, load, args),
        _catchup_record("etcd-range", f"HTTP gateway range on {prefix}", whole, load, args),
    ]


def run_catchup(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The catch-up suite on every system of ``args.realtime_systems``; return the records (also
    printed and appended to peers_catchup.jsonl)."""
    common = {"suite": "peers_catchup", "run": fanout.now_iso()}
    records: list[dict[str, Any]] = []
    with _workdir(args) as workdir:
        for name in args.realtime_systems:
            try:
                records += [{**common, **r} for r in _catchup_system(name, args, workdir)]
            except Exception as exc:  # one system failing must not hide the others' figures
                records.append({**common, "system": name, "error": repr(exc)[:500]})
    nats = next((r["seconds_median"] for r in records if r["system"] == "nats-kv"), None)
    for record in records:
        if nats and "seconds_median" in record:
            record["ratio_to_nats_kv"] = round(record["seconds_median"] / nats, 3)
    _emit(records, Path(args.results_dir) / "peers_catchup.jsonl")
    return records


def run(args: argparse.Namespace, suites: tuple[str, ...] | list[str] = SUITES) -> list[dict[str, Any]]:
    """The suites named (default: both); return every record."""
    runners = {"peers_fanout": run_fanout, "peers_catchup": run_catchup}
    return [record for suite in suites for record in runners[suite](args)]


# Charts -------------------------------------------------------------------------------------------
def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def plot(records: list[dict[str, Any]], output_dir: Path) -> list[Path]:
    """PNG bar charts of the records (the last record of each system wins): per N, the paced p99
    delay (``peers_fanout_p99_n<N>.png``) and the burst deliveries/s (``peers_fanout_rate_n<N>.png``);
    the catch-up seconds (``peers_catchup.png``). Return the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output_dir.mkdir(parents=True, exist_ok=True)
    charts: dict[str, tuple[str, str, dict[str, float]]] = {}
    for record in records:
        if record.get("suite") == "peers_fanout" and record.get("p99_ms") is not None:
            count = record["subscribers"]
            # a bar drawn from incomplete deliveries says so
            label = record["system"] + (f" ({record['missing']} missing)" if record["missing"] else "")
            if record["measurement"] == "paced":
                title = f"fan-out to {count} subscribers, paced: p99 delivery delay (lower is better)"
                chart = charts.setdefault(f"peers_fanout_p99_n{count}", (title, "milliseconds", {}))
                chart[2][label] = record["p99_ms"]
            else:
                title = f"fan-out to {count} subscribers, burst: deliveries per second (higher is better)"
                chart = charts.setdefault(f"peers_fanout_rate_n{count}", (title, "deliveries per second", {}))
                chart[2][label] = record["deliveries_per_second"]
        elif record.get("suite") == "peers_catchup" and "seconds_median" in record:
            title = f"catch-up of {record['topics']:,} keys by a new subscriber (lower is better)"
            chart = charts.setdefault("peers_catchup", (title, "seconds", {}))
            label = record["system"] + ("" if record["complete"] else f" (incomplete: {record['items']})")
            chart[2][label] = record["seconds_median"]
    written = []
    for name, (title, unit, values) in sorted(charts.items()):
        systems = sorted(values, key=values.__getitem__)
        figure, axes = plt.subplots(figsize=(8, 1.5 + 0.45 * len(systems)))
        colours = [SPREAD_COLOUR if s.startswith("spread") else PEER_COLOUR for s in systems]
        bars = axes.barh(systems, [values[s] for s in systems], color=colours)
        axes.bar_label(bars, fmt=_figure, padding=3)
        axes.margins(x=0.15)  # room for the label of the longest bar
        axes.set_xlabel(unit)
        axes.set_title(f"{title}\n(same run, same machine)", fontsize=9)
        figure.tight_layout()
        path = output_dir / f"{name}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


# Command line -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This module's options; those it shares with ``bench.fanout`` are added once."""
    fanout.add_arguments(parser)
    group = parser.add_argument_group("peer fan-out and catch-up suites")
    add_shared_option(
        group,
        "--realtime-systems",
        nargs="+",
        choices=SYSTEMS,
        default=list(DEFAULT_SYSTEMS),
        help="systems to run",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", choices=SUITES, nargs="+", default=list(SUITES), help="suites to run")
    parser.add_argument("--plot", metavar="DIR", help="also draw the PNG bar charts into DIR")
    add_arguments(parser)
    args = parser.parse_args()
    started = time.perf_counter()
    records = run(args, args.suite)
    if args.plot:
        for path in plot(records, Path(args.plot)):
            print(path)
    print(f"{len(records)} records in {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
