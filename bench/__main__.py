"""``python -m bench``: every benchmark suite, each next to its baseline or its peer systems, measured
in the same run on the same machine (these machines are shared and noisy: compare ratios, not
absolute figures). ``--suite`` picks suites; ``--help`` lists every suite's options.

Default suites (``make bench``), about 10 minutes on 2 cores before the settings-off variants of
``peers_small`` and ``local_reads`` were added (a few minutes more; not re-timed):

- ``peers_small``: 100-byte writes and reads at concurrency 1 and 32 on Spread (uvicorn on SQLite
  and PostgreSQL, daphne on SQLite), etcd (HTTP gateway), Redis and NATS JetStream KV;
- ``local_reads``: in-process ``api.get`` of a cached value (and with the cache off) against a
  redis-py GET over loopback, in one process;
- ``peers_fanout``: one publisher, 100 then 1,000 subscribers: Spread websockets, etcd watch,
  Redis pub/sub, NATS;
- ``peers_catchup``: a new subscriber after 20,000 topics exist: Spread, NATS KV watch, etcd;
- ``large_values``: a 100 MB upload and a concurrent reader, against ``cp`` and a minimal raw
  ASGI receiver on the same uvicorn;
- ``replication``: lag, resync rate and a big value between two nodes;
- ``memory``: server RSS with 1,000 and 10,000 idle websocket subscribers, against a minimal raw
  websocket server.

More suites (``--suite``): ``small_values`` (HTTP and in-process writes against a raw ASGI app and a
bare ORM insert), ``fanout`` and ``catchup`` (against a raw websocket broadcaster).

Each suite prints one JSON line per measurement and appends it to ``bench/results/<suite>.jsonl``;
at the end a side-by-side table of the run's key figures is printed and the charts are drawn into
``docs/bench/`` (``--no-plot`` to skip). Peers that are not installed are skipped with a message.
Every load loop is bounded in count and time and targets only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import (  # noqa: E402
    fanout,
    large_values,
    local_reads,
    memory,
    peers,
    peers_realtime,
    replication,
    small_values,
)
from bench import plot as peers_plot  # noqa: E402
from bench.options import add_common_options  # noqa: E402

Runner = Callable[[argparse.Namespace], list[dict[str, Any]]]

RUNNERS: dict[str, Runner] = {
    "peers_small": peers.run_args,
    "peers_fanout": lambda args: peers_realtime.run(args, ["peers_fanout"]),
    "peers_catchup": lambda args: peers_realtime.run(args, ["peers_catchup"]),
    "large_values": large_values.run,
    "replication": replication.run,
    "memory": memory.run,
    "small_values": small_values.run,
    "local_reads": local_reads.run,
    "fanout": lambda args: fanout.run_suites(["fanout"], args),
    "catchup": lambda args: fanout.run_suites(["catchup"], args),
}
DEFAULT_SUITES = [
    "peers_small",
    "local_reads",
    "peers_fanout",
    "peers_catchup",
    "large_values",
    "replication",
    "memory",
]
Plot = Callable[[list[dict[str, Any]], Path], list[Path]]
#: Which suites' records each chart function draws.
PLOTS: list[tuple[set[str], Plot]] = [
    ({"peers_small"}, peers_plot.plot),
    ({"peers_fanout", "peers_catchup"}, peers_realtime.plot),
    ({"large_values"}, large_values.plot),
    ({"memory"}, memory.plot),
]


def draw_charts(records: list[dict[str, Any]], directory: Path) -> list[Path]:
    drawn: list[Path] = []
    for suites, draw in PLOTS:
        mine = [record for record in records if record.get("suite") in suites and "skipped" not in record]
        if mine:
            drawn += draw(mine, directory)
    return drawn


def _figure(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def key_figures(record: dict[str, Any]) -> tuple[str, str, str] | None:
    """(system, measurement, figures) of a record worth a line in the table, else None."""
    suite, system = record.get("suite", ""), str(record.get("system", ""))
    if "skipped" in record:
        return system, suite, f"skipped: {record['skipped']}"
    if suite == "peers_small":
        ratio = f", {record['ratio_to_etcd']}x etcd" if "ratio_to_etcd" in record else ""
        return system, f"{record['method']} c={record['concurrency']}", f"{record['per_second']}/s{ratio}"
    if suite == "peers_fanout" and "p99_ms" in record:
        ratios = ""
        if "ratio_p99_to_etcd" in record:
            ratios = f", p99 {record['ratio_p99_to_etcd']}x / rate {record['ratio_deliveries_to_etcd']}x etcd"
        return (
            system,
            f"fan-out N={record['subscribers']} {record['measurement']}",
            f"p99 {_figure(record['p99_ms'])} ms, {_figure(record['deliveries_per_second'])}/s, "
            f"missing {record['missing']}{ratios}",
        )
    if suite == "peers_catchup" and "seconds_median" in record:
        ratio = f", {record['ratio_to_nats_kv']}x NATS KV" if "ratio_to_nats_kv" in record else ""
        return system, f"catch-up of {record['topics']}", f"{record['seconds_median']} s{ratio}"
    if suite == "large_values" and "mb_per_second" in record:
        figures = f"{record['mb_per_second']} MB/s"
        if "ratio_to_raw_asgi" in record:
            figures += f", {record['ratio_to_raw_asgi']}x raw ASGI"
        if "ttfb_fraction" in record:
            figures += f", first byte at {record['ttfb_fraction']:.1%} of the upload"
        return system, f"{record['megabytes']} MB {record.get('measurement', '')}", figures
    if suite == "local_reads":
        return (
            f"{record['series']} ({record['database']})",
            "in-process read",
            f"{_figure(record['per_second'])}/s, {record['ratio_to_redis_get']}x a Redis GET",
        )
    if suite == "memory" and record.get("measurement") == "idle_subscribers":
        figures = f"{record['rss_mib']} MiB ({record['synced']} synced)"
        if "ratio_rss_to_raw_ws" in record:
            figures += f", {record['ratio_rss_to_raw_ws']}x raw websocket server"
        return system, f"RSS, {record['subscribers']} idle subscribers", figures
    if suite.startswith("replication_"):
        flat: dict[str, Any] = {}
        for key, value in record.items():
            if isinstance(value, dict):
                flat.update({f"{key} {inner}": inner_value for inner, inner_value in value.items()})
            elif key not in ("suite", "run"):
                flat[key] = value
        return "spread", suite.replace("_", " "), ", ".join(f"{key} {value}" for key, value in flat.items())
    return None


def print_table(records: list[dict[str, Any]]) -> None:
    rows = [row for row in map(key_figures, records) if row is not None]
    if not rows:
        return
    width = [max(len(row[column]) for row in rows) for column in range(2)]
    print("\nSide by side (same run, same machine):")
    for system, measurement, figures in rows:
        print(f"  {system:<{width[0]}}  {measurement:<{width[1]}}  {figures}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--suite", choices=list(RUNNERS), nargs="+", default=DEFAULT_SUITES, help="suites to run"
    )
    parser.add_argument("--plot-dir", default=str(REPO / "docs" / "bench"), help="where the charts go")
    parser.add_argument("--no-plot", action="store_true", help="do not draw the charts")
    for module in (
        peers,
        local_reads,
        peers_realtime,
        large_values,
        replication,
        memory,
        small_values,
        fanout,
    ):
        module.add_arguments(parser)
    add_common_options(parser)
    args = parser.parse_args()
    started = time.monotonic()
    records: list[dict[str, Any]] = []
    for suite in args.suite:
        suite_started = time.monotonic()
        records += RUNNERS[suite](args)
        print(f"# {suite}: {time.monotonic() - suite_started:.0f} s", flush=True)
    print_table(records)
    print(f"\nAll suites: {time.monotonic() - started:.0f} s")
    if not args.no_plot:
        for path in draw_charts(records, Path(args.plot_dir)):
            print(f"chart: {path}")


if __name__ == "__main__":
    main()
