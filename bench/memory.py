"""``python -m bench.memory``: server memory (RSS) with idle websocket subscribers, against a raw
websocket baseline.

For each system, one server process is started; a few websockets are opened and closed (warm-up),
then the client opens websockets to ``/ws/fan?since=0`` in steps (``--subscribers``, default 1,000
then 10,000 in all), ``CONNECT_CONCURRENCY`` handshakes at a time, each waiting for ``synced``.
Recorded per step, after a short settle: the server's RSS before any subscriber and with N idle
subscribers (VmRSS of the server process and its descendants, from ``/proc``), bytes per
subscriber, the server's CPU use while they idle, and how many subscribers the server counts (the
propagation report of one POST, sent after the readings). After every websocket closed: how many
the node still counts (polled until 0, bounded), its RSS and its peak RSS.

The baseline, measured in the same run, is ``bench/baseline_ws.py`` on the same uvicorn: no
per-subscriber state beyond the websocket. The issue's target: 10,000 idle subscribers in under
1 GiB of RSS for Spread. The soft limit on open files is raised (up to the hard limit) before the
servers start, so they inherit it; if a step cannot be reached, its record says how many synced
and why the others closed. Loopback only, bounded in count and time, every server stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import fanout  # noqa: E402
from bench.options import add_common_options, add_named_option, emitter, suite_main  # noqa: E402
from bench.processes import PROC, children, cpu_seconds, status_kib, tree_mib  # noqa: E402

SUITE = "memory"
SPREAD = "spread-uvicorn-sqlite"
BASELINE = "raw-ws-uvicorn"
KIB = 1024
MIB = 1024 * KIB
TARGET_MIB = 1024  # the target: 10,000 idle subscribers in under 1 GiB
TARGET_SUBSCRIBERS = 10_000
SETTLE_SECONDS = 2.0  # quiet time before a reading, so the last handshakes are done
IDLE_WINDOW = 5.0  # seconds over which the server's CPU use with idle subscribers is measured
SUBSCRIBE_TIMEOUT = 300.0  # seconds for one step's subscribers to be synced
COUNT_TIMEOUT = 60.0  # seconds for the POST whose propagation report counts the subscribers
FORGET_TIMEOUT = 120.0  # seconds for the node to stop counting subscribers that left
FORGET_POLL = 1.0
MAX_COUNT_ATTEMPTS = 1000
WARMUP_SUBSCRIBERS = 10  # connected and closed before the first reading: lazy imports, caches
FD_HEADROOM = 512  # descriptors beyond one per websocket (database, logs, libraries)
SPREAD_COLOR, BASELINE_COLOR, TARGET_COLOR = "#417690", "#999", "#ba2121"


# Processes ----------------------------------------------------------------------------------------
def server_pid(port: int) -> int:
    """The child of this process whose command line names ``port`` (the server listening on it)."""
    for pid in children(os.getpid()):
        try:
            arguments = (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(arg == str(port) or arg.endswith(f":{port}") for arg in arguments):
            return pid
    raise LookupError(f"no child process of {os.getpid()} serves port {port}")


def raise_fd_limit(needed: int) -> dict[str, int]:
    """Raise the soft limit on open files as far as the hard limit allows, before any server starts
    (they inherit it); the limits that result."""
    soft = fanout.raise_fd_limit(needed)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return {"needed": needed, "soft": soft, "hard": -1 if hard == resource.RLIM_INFINITY else int(hard)}


# Measurement --------------------------------------------------------------------------------------
async def idle_reading(pid: int) -> dict[str, float]:
    """After a settle: the server's CPU use over ``IDLE_WINDOW`` seconds, then its RSS."""
    await asyncio.sleep(SETTLE_SECONDS)
    cpu, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(IDLE_WINDOW)
    busy = (cpu_seconds(pid) - cpu) / (time.perf_counter() - started)
    return {"rss_mib": tree_mib(pid), "server_cpu_percent_idle": round(100 * busy, 1)}


async def count_on_server(server: fanout.Server, name: str) -> tuple[int | None, str | None]:
    """How many subscribers the node notifies under the prefix, from the propagation report of one
    POST to ``<prefix>/<name>`` (None from the baseline, which keeps no count); and the error, if
    the POST failed."""
    try:
        async with httpx.AsyncClient(timeout=COUNT_TIMEOUT) as client:
            response = await client.post(
                f"{server.url}/raw/{fanout.PREFIX}/{name}", content=fanout.VALUE, headers=server.headers
            )
        report = response.json().get("propagation")
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    if report is None:
        return None, None
    return int(sum(entry["subscribers"] for entry in report if entry["path"] == fanout.PREFIX)), None


async def forgotten(server: fanout.Server) -> dict[str, Any]:
    """After every websocket closed: the count the node holds, polled until it is 0 (for at most
    ``FORGET_TIMEOUT`` seconds; a POST that fails while the node is busy is retried)."""
    started = time.perf_counter()
    readings: list[tuple[float, int]] = []  # (seconds after the close, count)
    errors: list[str] = []
    for attempt in range(MAX_COUNT_ATTEMPTS):
        count, error = await count_on_server(server, f"after-close-{attempt}")
        elapsed = round(time.perf_counter() - started, 1)
        if error is not None:
            errors.append(error)
        elif count is None:
            return {"subscribers_counted_after_close": None}  # the baseline keeps no count
        else:
            readings.append((elapsed, count))
        if count == 0 or elapsed > FORGET_TIMEOUT:
            break
        await asyncio.sleep(FORGET_POLL)
    first, last = (readings[0], readings[-1]) if readings else ((None, None), (None, None))
    return {
        "subscribers_counted_after_close": first[1],
        "first_count_seconds": first[0],
        "subscribers_counted_at_end": last[1],
        "seconds_until_zero": last[0] if last[1] == 0 else None,
        "count_errors": sorted(set(errors))[:3],
        "count_error_count": len(errors),
    }


async def subscribe(subscribers: list[fanout.Subscriber]) -> float:
    """Wait (bounded) until every subscriber is synced or gone; the seconds it took."""
    started = time.perf_counter()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.synced.wait() for s in subscribers)), SUBSCRIBE_TIMEOUT)
    return round(time.perf_counter() - started, 3)


async def warm_up(url: str, headers: dict[str, str]) -> None:
    """Subscribe a few websockets and close them, so the first reading is not of a cold server."""
    subscribers = [fanout.Subscriber(fanout.Tally()) for _ in range(WARMUP_SUBSCRIBERS)]
    gate = asyncio.Semaphore(fanout.CONNECT_CONCURRENCY)
    tasks = [asyncio.create_task(s.run(url, headers, gate)) for s in subscribers]
    await subscribe(subscribers)
    await fanout.close_all(subscribers, tasks)


async def measure(
    server: fanout.Server, pid: int, sizes: list[int], keep: Callable[[dict[str, Any]], None]
) -> None:
    """Idle subscribers in steps up to each of ``sizes``: a record per step, then one after all
    closed, each handed to ``keep`` as soon as it is measured."""
    tally = fanout.Tally()
    subscribers: list[fanout.Subscriber] = []
    tasks: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(fanout.CONNECT_CONCURRENCY)
    url = f"{server.ws_url}/ws/{fanout.PREFIX}?since=0"
    await warm_up(url, server.headers)
    before = await idle_reading(pid)
    closing: dict[str, Any] = {}
    try:
        for index, size in enumerate(sorted(sizes)):
            added = [fanout.Subscriber(tally) for _ in range(size - len(subscribers))]
            subscribers += added
            tasks += [asyncio.create_task(s.run(url, server.headers, gate)) for s in added]
            subscribe_seconds = await subscribe(subscribers)
            reading = await idle_reading(pid)
            synced = sum(s.synced.is_set() and s.closed is None for s in subscribers)
            counted, count_error = await count_on_server(server, f"m{index}")  # after the reading
            grown = reading["rss_mib"] - before["rss_mib"]
            keep(
                {
                    "measurement": "idle_subscribers",
                    "subscribers": size,
                    "synced": synced,
                    "subscribe_seconds": subscribe_seconds,
                    **reading,
                    "rss_before_mib": before["rss_mib"],
                    "bytes_per_subscriber": round(grown * MIB / synced) if synced else None,
                    "counted_by_server": counted,
                    "count_error": count_error,
                    "client_rss_mib": round(status_kib(os.getpid()) / KIB, 1),
                    "still_connecting": sum(1 for s in subscribers if not s.synced.is_set()),
                    "closed_early_count": sum(1 for s in subscribers if s.closed),
                    "closed_early": sorted({s.closed for s in subscribers if s.closed})[:5],
                    "error_frames": sorted({e for s in subscribers for e in s.errors})[:5],
                }
            )
    finally:
        closing = await fanout.close_all(subscribers, tasks)
    after = await forgotten(server)
    reading = await idle_reading(pid)
    keep(
        {
            "measurement": "after_close",
            "subscribers": len(subscribers),
            **closing,
            **after,
            "rss_before_mib": before["rss_mib"],
            "rss_after_close_mib": reading["rss_mib"],
            "server_cpu_percent_idle": reading["server_cpu_percent_idle"],
            "rss_peak_mib": tree_mib(pid, "VmHWM"),
            "server_log": server.log_problems(),
        }
    )


def start(kind: str, workdir: Path) -> tuple[fanout.Server, int]:
    """Start the node or the baseline; the server and the pid of its process."""
    server = fanout.start_baseline(workdir) if kind == BASELINE else fanout.start_node(workdir, "memory")
    try:
        return server, server_pid(int(server.url.rpartition(":")[2]))
    except BaseException:
        server.stop()
        raise


def ratio(value: float | None, base: float | None) -> float | None:
    return round(value / base, 3) if value is not None and base else None


def compare(record: dict[str, Any], reference: dict[str, Any] | None) -> None:
    """Add to a Spread step record the baseline's figures for the same step, the ratios, and the
    issue's target."""
    reference = reference or {}
    record.update(
        baseline_raw_ws_rss_mib=reference.get("rss_mib"),
        baseline_raw_ws_bytes_per_subscriber=reference.get("bytes_per_subscriber"),
        ratio_rss_to_raw_ws=ratio(record["rss_mib"], reference.get("rss_mib")),
        ratio_bytes_per_subscriber_to_raw_ws=ratio(
            record["bytes_per_subscriber"], reference.get("bytes_per_subscriber")
        ),
    )
    if record["subscribers"] >= TARGET_SUBSCRIBERS:
        record["target_rss_mib"] = TARGET_MIB
        if record["bytes_per_subscriber"] is not None:  # when fewer synced: at this step's rate
            projected = record["rss_before_mib"] + record["bytes_per_subscriber"] * TARGET_SUBSCRIBERS / MIB
            record["projected_rss_mib_at_target"] = round(projected, 1)
        record["within_target"] = record["synced"] >= TARGET_SUBSCRIBERS and record["rss_mib"] < TARGET_MIB


# Command line -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("memory suite")
    add_named_option(
        group,
        ["--memory-subscribers", "--subscribers"],
        dest="memory_subscribers",
        type=int,
        nargs="+",
        default=[1000, TARGET_SUBSCRIBERS],
        help="idle subscribers in all, per step (default: 1000 10000)",
    )
    add_named_option(
        group,
        ["--memory-systems", "--systems"],
        dest="memory_systems",
        nargs="+",
        choices=[BASELINE, SPREAD],
        default=[BASELINE, SPREAD],
        help="servers measured, in this order",
    )
    add_common_options(group)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the memory suite; the records (also printed and appended to ``memory.jsonl``)."""
    sizes = sorted(args.memory_subscribers)
    limits = raise_fd_limit(max(sizes) + FD_HEADROOM)
    emit = emitter(Path(args.results_dir), SUITE)
    common = {"suite": SUITE, "run": fanout.now_iso()}
    records: list[dict[str, Any]] = []
    baseline_steps: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.log_dir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for system in args.memory_systems:

            def keep(record: dict[str, Any], system: str = system) -> None:
                if record["measurement"] == "idle_subscribers":
                    record["fd_limit"] = limits
                    if system == BASELINE:
                        baseline_steps[record["subscribers"]] = record
                    else:
                        compare(record, baseline_steps.get(record["subscribers"]))
                records.append({**common, "system": system, **record})
                emit(records[-1])

            server, pid = start(system, workdir)
            try:
                asyncio.run(measure(server, pid, sizes, keep))
            finally:
                server.stop()
    return records


def bar_chart(
    path: Path, values: dict[str, float], *, xlabel: str, title: str, fmt: str, target: float | None = None
) -> Path:
    """A horizontal bar chart in the style of ``bench/plot.py`` (Spread blue, baselines grey), bars
    bottom-up in the order given, with an optional dashed target line; written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(values)
    figure, axes = plt.subplots(figsize=(9, 0.9 + 0.45 * len(labels)))
    colors = [SPREAD_COLOR if label.startswith("spread") else BASELINE_COLOR for label in labels]
    bars = axes.barh(labels, [values[label] for label in labels], color=colors)
    axes.bar_label(bars, fmt=fmt, padding=3)
    if target is not None:
        axes.axvline(target, color=TARGET_COLOR, linestyle="--", linewidth=1)
    axes.set_xlim(0, max([*values.values(), target or 0]) * 1.25)
    axes.set_xlabel(xlabel)
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot(records: list[dict[str, Any]], output_dir: Path) -> list[Path]:
    """RSS with N idle subscribers, Spread beside the baseline, from the latest record of each
    (system, N): ``memory_rss.png``."""
    latest: dict[tuple[int, bool, str], dict[str, Any]] = {}
    for record in records:
        if record.get("suite") == SUITE and record.get("measurement") == "idle_subscribers":
            system = record["system"]
            latest[(record["subscribers"], system.startswith("spread"), system)] = record
    if not latest:
        return []
    values = {
        f"{key[2]}, {latest[key]['synced']:,} subscribers": latest[key]["rss_mib"] for key in sorted(latest)
    }
    xlabel = f"server RSS, MiB (dashed: the {TARGET_MIB} MiB target at {TARGET_SUBSCRIBERS:,})"
    title = "server RSS with idle websocket subscribers, same run and machine"
    path = output_dir / "memory_rss.png"
    return [bar_chart(path, values, xlabel=xlabel, title=title, fmt="%.0f MiB", target=TARGET_MIB)]


def main() -> None:
    suite_main(__doc__, SUITE, add_arguments, run, plot)


if __name__ == "__main__":
    main()
