"""``python -m bench.large_values``: one large value (``--mb``, default 100 MiB of random bytes)
uploaded to Spread and read while it arrives, against a disk copy and a raw ASGI receiver.

Measured in the same run, in one temporary directory (MB here means MiB, 2**20 bytes):

- ``copy``: ``cp`` of the file to another file beside it, and ``cp`` then ``sync`` of the copy:
  the disk/copy reference.
- ``raw-asgi-<server>``: a streamed POST (1 MiB chunks, chunked encoding) to
  ``bench/baseline_upload.py`` on the node's ASGI server, which writes the body to a file and
  fsyncs it: the physical limit of the stack.
- ``spread-<server>-<database>``: the same streamed ``POST /raw/big/alone``, then
  ``POST /raw/big/file`` while a reader, started once the first chunk is sent, polls
  ``GET /raw/big/file`` until the topic exists and reads it to the end. Figures: MB/s and its ratio
  to the raw receiver (target >= 0.5), the reader's time to first byte from the upload's start
  and as a fraction of the upload time (target < 5%), the SHA-256 of the bytes read and of the
  stored value against the file's, and the node's peak RSS; then ``Range`` GETs of the middle MiB
  of the complete value (median time, target 50 ms for a 1 GiB value; bytes checked).

SQLite always; PostgreSQL when ``$BENCH_POSTGRES_URL`` (default ``postgres://postgres@127.0.0.1:5432``)
answers, in a temporary database dropped afterwards. ``--server daphne`` serves the node and the
baseline with daphne instead of uvicorn (``spread_node``); daphne hands the application a request
body only once all of it has arrived. Loopback only, bounded in time, every server stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.fanout import BENCH_SECRET, Server, now_iso  # noqa: E402
from bench.memory import bar_chart  # noqa: E402
from bench.options import add_common_options, add_named_option, emitter, suite_main  # noqa: E402
from bench.peers import wait_port  # noqa: E402
from bench.processes import status_kib  # noqa: E402
from spread_core.testing import LiveNode, free_port  # noqa: E402

SUITE = "large_values"
MIB = 1024 * 1024
CHUNK = MIB  # bytes per piece of the streamed request body
UVICORN, DAPHNE = "uvicorn", "daphne"
SQLITE, POSTGRES = "sqlite", "postgres"
FILES, DATABASE = "files", "database"
#: ``--large-stores database``: blob bytes as chunk rows of the node's database, not files.
DATABASE_STORE = {"BACKEND": "spread_core.blobs.database.DatabaseBlobStore", "OPTIONS": {}}
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
TOPIC = "big/file"
TOPIC_ALONE = "big/alone"
OCTET_STREAM = "application/octet-stream"
RANGE_TARGET_SECONDS = 0.05  # issue 13: the middle MiB of a 1 GiB value in 50 ms
TTFB_TARGET = 0.05  # the target: first byte to a reader within 5% of the upload time
RATIO_TARGET = 0.5  # the target: at least half the raw receiver's MB/s
TRANSFER_TIME_LIMIT = 300.0  # seconds for one upload (and its reader), whatever the size
STOP_TIMEOUT = 15.0
READ_POLL_SECONDS = 0.005  # between two GETs while the topic does not exist yet
COMMAND_TIMEOUT = 300.0  # cp, sync, migrate
ANSWER_FIELDS = (("event_id", "id"), ("received_bytes", "size"))


# Servers ------------------------------------------------------------------------------------------
@dataclass
class Running:
    """A server process under test, with what the client needs and how to stop it."""

    system: str
    url: str
    pid: int
    stop: Callable[[], None]
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)

    def log_problems(self) -> dict[str, int]:
        """Warnings, errors and tracebacks in the server's log, with their counts."""
        return Server(self.system, self.url, {}, self.stop, self.log_path).log_problems()


def terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(system: str, command: list[str], env: dict[str, str], log_path: Path, port: int) -> Running:
    """Start ``command`` (a server on ``port``) and wait until it listens."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, process, log_path)
    except BaseException:
        terminate(process)
        raise
    return Running(system, f"http://127.0.0.1:{port}", process.pid, lambda: terminate(process), log_path)


def start_baseline(server: str, workdir: Path) -> Running:
    port = free_port()
    uploads = workdir / "baseline-uploads"
    uploads.mkdir(exist_ok=True)
    env = {**os.environ, "BENCH_UPLOAD_DIR": str(uploads)}
    app = "bench.baseline_upload:app"
    if server == UVICORN:
        command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        command += ["--lifespan", "off", "--log-level", "warning", "--no-access-log"]
    else:
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), app]
    return spawn(f"raw-asgi-{server}", command, env, workdir / f"baseline-{server}.log", port)


def postgres_answers() -> bool:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL + "/postgres", connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def new_database(database: str, workdir: Path, name: str) -> tuple[str, Callable[[], None]]:
    """A new, empty database for the node ``name``; its URL and how to drop it (a SQLite file is
    kept with the logs)."""
    if database == SQLITE:
        path = workdir / f"{name}.sqlite3"
        for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            leftover.unlink(missing_ok=True)  # a kept --log-dir must not hand over earlier values
        return f"sqlite:///{path}", lambda: None
    import psycopg

    name = f"spread_bench_large_{os.getpid()}"

    def drop() -> None:
        with psycopg.connect(POSTGRES_URL + "/postgres", autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    drop()
    with psycopg.connect(POSTGRES_URL + "/postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"{POSTGRES_URL}/{name}", drop


def start_spread(server: str, database_url: str, workdir: Path, name: str, store: str = FILES) -> Running:
    env = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": BENCH_SECRET,
        "SPREAD_NODE_NAME": "bench",
        "SPREAD_BLOB_ROOT": str(workdir / f"{name}-blobs"),  # the file store's (the node's default)
    }
    if store == DATABASE:
        env["SPREAD_OPTIONS"] = json.dumps({"BLOB_STORE": DATABASE_STORE})
    log_path = workdir / f"{name}.log"
    node = LiveNode(REPO / "manage.py", env, log_path=log_path)
    if server == UVICORN:
        node.start()
        pid = node.process.pid if node.process is not None else 0
        running = Running(name, node.url, pid, node.stop, log_path)
    else:
        node.manage("migrate", "--verbosity", "0")  # spread_node migrates; daphne does not
        port = free_port()
        command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
        command.append("spread_project.asgi:application")
        running = spawn(name, command, node.env, log_path, port)
    try:
        token = httpx.post(f"{running.url}/jwttoken", timeout=30).json()["token"]
    except BaseException:
        running.stop()
        raise
    running.headers = {"Authorization": f"Bearer {token}"}
    return running


# Measurements -------------------------------------------------------------------------------------
def make_file(path: Path, mib: int) -> str:
    """Write ``mib`` MiB of random bytes to ``path``; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(mib):
            piece = os.urandom(MIB)
            digest.update(piece)
            out.write(piece)
    return digest.hexdigest()


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, timeout=COMMAND_TIMEOUT)
    return time.perf_counter() - started


def copies(source: Path, mib: int) -> list[dict[str, Any]]:
    """``cp`` beside the source, then ``cp`` + ``sync`` of the copy (copies deleted afterwards)."""
    plain, synced = source.with_name("copy"), source.with_name("copy-synced")
    try:
        cp_seconds = timed(["cp", str(source), str(plain)])
        cp_sync_seconds = timed(["cp", str(source), str(synced)]) + timed(["sync", str(synced)])
    finally:
        plain.unlink(missing_ok=True)
        synced.unlink(missing_ok=True)
    return [
        {"system": "cp", "measurement": "copy", **rate(mib, cp_seconds)},
        {"system": "cp+sync", "measurement": "copy", **rate(mib, cp_sync_seconds)},
    ]


def rate(mib: int, seconds: float) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "mb_per_second": round(mib / seconds, 1)}


@dataclass
class Progress:
    """Shared by the uploader (the event loop) and the reader (a thread): when the client handed
    the first and the last piece of the body to the connection, and whether the upload is over."""

    started: float
    first_sent: threading.Event = field(default_factory=threading.Event)
    over: threading.Event = field(default_factory=threading.Event)
    first_sent_seconds: float | None = None
    body_sent_seconds: float | None = None

    def elapsed(self) -> float:
        return round(time.perf_counter() - self.started, 4)


async def file_pieces(source: Path, progress: Progress) -> AsyncIterator[bytes]:
    """The file in ``CHUNK`` pieces, noting in ``progress`` when the first one has been written to
    the connection (the client asks for the second) and when the last one has."""
    with source.open("rb") as data:
        while piece := data.read(CHUNK):  # page-cache reads of 1 MiB: not worth a thread
            yield piece
            if not progress.first_sent.is_set():
                progress.first_sent_seconds = progress.elapsed()
                progress.first_sent.set()
    progress.body_sent_seconds = progress.elapsed()


def read_while_uploading(url: str, progress: Progress) -> dict[str, Any]:
    """Once the upload has begun, GET ``url`` until it exists, then read it to the end; times from
    the upload's start. Runs in its own thread, so that neither the reader nor the uploader waits
    for the other's turn on one event loop."""
    figures: dict[str, Any] = {"reader_polls": 0, "reader_bytes": 0, "ttfb_seconds": None}
    digest = hashlib.sha256()
    deadline = progress.started + TRANSFER_TIME_LIMIT
    while not progress.first_sent.wait(READ_POLL_SECONDS):
        if progress.over.is_set() or time.perf_counter() > deadline:
            return figures
    try:
        with httpx.Client(timeout=60.0) as client:
            while time.perf_counter() < deadline:
                upload_over = progress.over.is_set()  # before the GET: a 404 after it is final
                figures["reader_polls"] += 1
                with client.stream("GET", url) as response:
                    if response.status_code == 404:
                        response.read()  # so the connection is reused for the next poll
                        if upload_over:
                            figures["reader_error"] = "still 404 after the upload ended"
                            break
                        time.sleep(READ_POLL_SECONDS)
                        continue
                    figures["reader_found_seconds"] = progress.elapsed()
                    figures["reader_status"] = response.status_code
                    figures["reader_etag"] = response.headers.get("etag")
                    # No Content-Length: the node streams a value still arriving (docs/http-api.md).
                    figures["reader_saw_upload_in_progress"] = "content-length" not in response.headers
                    for piece in response.iter_raw():
                        if piece and figures["ttfb_seconds"] is None:
                            figures["ttfb_seconds"] = progress.elapsed()
                            figures["first_byte_before_body_sent"] = progress.body_sent_seconds is None
                        digest.update(piece)
                        figures["reader_bytes"] += len(piece)
                    figures["reader_done_seconds"] = round(progress.elapsed(), 3)
                    break
    except httpx.HTTPError as exc:
        figures["reader_error"] = f"{type(exc).__name__}: {exc}"
    figures["reader_sha256"] = digest.hexdigest()
    return figures


async def upload(
    url: str, source: Path, headers: dict[str, str], read_url: str | None = None
) -> dict[str, Any]:
    """Stream ``source`` to ``url``; with ``read_url``, read it concurrently. Upload time is from
    the first byte offered to the answer."""
    progress = Progress(time.perf_counter())
    reader = (
        asyncio.ensure_future(asyncio.to_thread(read_while_uploading, read_url, progress))
        if read_url
        else None
    )
    figures: dict[str, Any] = {}
    try:
        async with httpx.AsyncClient(timeout=60.0) as client:
            response = await client.post(
                url, content=file_pieces(source, progress), headers={**headers, "Content-Type": OCTET_STREAM}
            )
        figures["upload_seconds"] = round(progress.elapsed(), 3)
        figures["first_piece_sent_seconds"] = progress.first_sent_seconds
        figures["body_sent_seconds"] = progress.body_sent_seconds
        figures["status"] = response.status_code
        if response.status_code == 200:
            answer = response.json()  # Spread's report has the event id, the receiver's the size
            figures.update({key: answer[field] for key, field in ANSWER_FIELDS if field in answer})
        else:
            figures["answer"] = response.text[:500]
    finally:
        progress.over.set()
        if reader is not None:  # a thread cannot be cancelled; it ends by its deadline and timeouts
            figures.update(await asyncio.shield(reader))
    return figures


def transfer(url: str, source: Path, headers: dict[str, str], read_url: str | None = None) -> dict[str, Any]:
    return asyncio.run(asyncio.wait_for(upload(url, source, headers, read_url), TRANSFER_TIME_LIMIT))


def stored_sha256(running: Running, topic: str) -> str | None:
    head = httpx.head(f"{running.url}/raw/{topic}", timeout=30)
    return head.headers.get("x-spread-sha256")


def peak_rss_mib(pid: int) -> float:
    return round(status_kib(pid, "VmHWM") / 1024, 1)


def measure_spread(
    running: Running, source: Path, sha256: str, mib: int, baseline: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Upload alone, then upload with a concurrent reader; a record for each."""
    base_rate = baseline["mb_per_second"] if baseline else None
    records = []
    for measurement, topic, reading in (("upload", TOPIC_ALONE, False), ("upload_with_reader", TOPIC, True)):
        url = f"{running.url}/raw/{topic}"
        figures = transfer(url, source, running.headers, url if reading else None)
        record: dict[str, Any] = {"system": running.system, "measurement": measurement}
        if "upload_seconds" in figures:
            record.update(rate(mib, figures["upload_seconds"]))
        record.update(figures)
        record["stored_sha256_ok"] = stored_sha256(running, topic) == sha256
        if base_rate and "mb_per_second" in record:
            record["baseline_raw_asgi_mb_per_second"] = base_rate
            record["ratio_to_raw_asgi"] = round(record["mb_per_second"] / base_rate, 3)
            record["ratio_target"] = RATIO_TARGET
        if reading:
            record["reader_sha256_ok"] = record.pop("reader_sha256") == sha256
            # The ETag is the event id: the reader read this upload, not an earlier value.
            record["reader_read_this_upload"] = (
                record.pop("reader_etag", None) == f'"{record.get("event_id")}"'
            )
            if record.get("ttfb_seconds") is not None and record.get("upload_seconds"):
                record["ttfb_fraction"] = round(record["ttfb_seconds"] / record["upload_seconds"], 4)
                record["ttfb_target"] = TTFB_TARGET
        record["server_peak_rss_mib"] = peak_rss_mib(running.pid)
        records.append(record)
    records.append(range_read(running, source, mib))
    records[-1]["server_log"] = running.log_problems()
    return records


def range_read(running: Running, source: Path, mib: int, repeats: int = 5) -> dict[str, Any]:
    """``Range`` GETs of the middle MiB of the complete value: the median time, and whether the
    bytes are the file's."""
    start = (mib // 2) << 20
    stop = min(start + (1 << 20), mib << 20)
    with open(source, "rb") as file:
        file.seek(start)
        expected = file.read(stop - start)
    times, same = [], True
    with httpx.Client(timeout=60) as client:
        for _ in range(repeats):
            began = time.perf_counter()
            answer = client.get(
                f"{running.url}/raw/{TOPIC_ALONE}", headers={"Range": f"bytes={start}-{stop - 1}"}
            )
            times.append(time.perf_counter() - began)
            same = same and answer.status_code == 206 and answer.content == expected
    return {
        "system": running.system,
        "measurement": "range_read_middle_mib",
        "value_mib": mib,
        "median_seconds": round(sorted(times)[len(times) // 2], 4),
        "target_seconds": RANGE_TARGET_SECONDS,
        "bytes_ok": same,
    }


def measure_baseline(running: Running, source: Path, mib: int, workdir: Path) -> dict[str, Any]:
    figures = transfer(f"{running.url}/upload", source, {})
    for leftover in (workdir / "baseline-uploads").iterdir():
        leftover.unlink()
    record = {"system": running.system, "measurement": "upload", **rate(mib, figures["upload_seconds"])}
    record["received_all_bytes"] = figures.get("received_bytes") == mib * MIB
    record.update(figures, server_peak_rss_mib=peak_rss_mib(running.pid))
    return record


def measure_server(
    server: str,
    args: argparse.Namespace,
    source: Path,
    sha256: str,
    workdir: Path,
    keep: Callable[[dict[str, Any]], None],
) -> None:
    """The raw receiver, then Spread on each database, all on ``server``; each record to ``keep``."""
    baseline = start_baseline(server, workdir)
    try:
        base = measure_baseline(baseline, source, args.large_mb, workdir)
    finally:
        baseline.stop()
    keep(base)
    for database, store in itertools.product(args.large_databases, args.large_stores):
        system = f"spread-{server}-{database}" + ("" if store == FILES else f"-{store}-store")
        if database == POSTGRES and not postgres_answers():
            keep({"system": system, "skipped": f"PostgreSQL does not answer at {POSTGRES_URL}"})
            continue
        database_url, drop = new_database(database, workdir, system)
        try:
            running = start_spread(server, database_url, workdir, system, store)
            try:
                for record in measure_spread(running, source, sha256, args.large_mb, base):
                    keep(record)
            finally:
                running.stop()
        finally:
            drop()


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the large-values suite; the records (also printed and appended to ``large_values.jsonl``
    as they are measured)."""
    emit = emitter(Path(args.results_dir), SUITE)
    common = {"suite": SUITE, "run": now_iso(), "megabytes": args.large_mb}
    records: list[dict[str, Any]] = []
    reference: dict[str, float] = {}

    def keep(record: dict[str, Any]) -> None:
        if record["system"] == "cp":
            reference["cp"] = record["mb_per_second"]
        if record["system"].startswith("spread") and "mb_per_second" in record and reference:
            record["ratio_to_cp"] = round(record["mb_per_second"] / reference["cp"], 3)
        records.append({**common, **record})
        emit(records[-1])

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.log_dir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        source = workdir / "value.bin"
        try:
            sha256 = make_file(source, args.large_mb)
            for record in copies(source, args.large_mb):
                keep(record)
            for server in args.large_servers:
                measure_server(server, args, source, sha256, workdir, keep)
        finally:
            source.unlink(missing_ok=True)
    return records


# Command line -------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("large-values suite")
    add_named_option(
        group, ["--large-mb", "--mb"], dest="large_mb", type=int, default=100, help="MiB uploaded"
    )
    add_named_option(
        group,
        ["--large-databases", "--databases"],
        dest="large_databases",
        nargs="+",
        choices=[SQLITE, POSTGRES],
        default=[SQLITE, POSTGRES],
        help="node databases (PostgreSQL skipped when it does not answer)",
    )
    add_named_option(
        group,
        ["--large-stores", "--stores"],
        dest="large_stores",
        nargs="+",
        choices=[FILES, DATABASE],
        default=[FILES, DATABASE],
        help="the node's blob store: files (its default) and the database's chunk rows",
    )
    add_named_option(
        group,
        ["--large-servers", "--server"],
        dest="large_servers",
        nargs="+",
        choices=[UVICORN, DAPHNE],
        default=[UVICORN],
        help="ASGI servers of the node and the baseline (default: uvicorn, as spread_node)",
    )
    add_common_options(group)


def plot(records: list[dict[str, Any]], output_dir: Path) -> list[Path]:
    """From the latest record of each (system, measurement): MB/s of every transfer
    (``large_values_mb_per_second.png``) and the readers' time to first byte as a fraction of the
    upload time (``large_values_ttfb.png``)."""
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("suite") == SUITE and "mb_per_second" in record:
            latest[f"{record['system']} ({record['measurement'].replace('_', ' ')})"] = record
    if not latest:
        return []
    megabytes = next(iter(latest.values()))["megabytes"]
    rates = {label: latest[label]["mb_per_second"] for label in latest}
    written = [
        bar_chart(
            output_dir / "large_values_mb_per_second.png",
            dict(sorted(rates.items(), key=lambda item: item[1])),
            xlabel="MB/s (MiB per second)",
            title=f"one {megabytes} MiB value, same run and machine",
            fmt="%.0f",
        )
    ]
    fractions = {label: 100 * r["ttfb_fraction"] for label, r in latest.items() if "ttfb_fraction" in r}
    if fractions:
        written.append(
            bar_chart(
                output_dir / "large_values_ttfb.png",
                dict(sorted(fractions.items(), key=lambda item: item[1])),
                xlabel="reader's time to first byte, % of the upload time (dashed: 5% target)",
                title=f"reading a {megabytes} MiB value while it is uploaded",
                fmt="%.1f %%",
                target=100 * TTFB_TARGET,
            )
        )
    return written


def main() -> None:
    suite_main(__doc__, SUITE, add_arguments, run, plot)


if __name__ == "__main__":
    main()
