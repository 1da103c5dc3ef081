"""A private PostgreSQL cluster for fault tests: ``initdb`` into a new temporary directory, served
on a free loopback port, stopped and started at will. The shared server (127.0.0.1:5432) is
never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from spread_core.testing import free_port

POSTGRES_ROOT = Path("/usr/lib/postgresql")
#: PostgreSQL refuses to run as root: under root the cluster belongs to this user.
CLUSTER_USER = "postgres"
COMMAND_TIMEOUT = 120
#: Superuser ``postgres`` with trust authentication (the cluster listens on loopback only); no
#: fsync during initdb, which is thrown away with the test.
INITDB_OPTIONS = ("-U", "postgres", "-A", "trust", "--no-locale", "-E", "UTF8", "--no-sync")


def postgres_bin_dir() -> Path | None:
    """The ``bin`` directory of the newest PostgreSQL installed (Debian layout), or None."""
    found = [
        directory / "bin"
        for directory in POSTGRES_ROOT.glob("*")
        if directory.name.isdigit() and (directory / "bin" / "initdb").exists()
    ]
    return max(found, key=lambda path: int(path.parent.name)) if found else None


class PrivatePostgres:
    """One cluster in a temporary directory; ``url(dbname)`` reaches it over TCP as ``postgres``
    (trust authentication, loopback only). ``destroy()`` stops it and removes the directory."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        # Not under pytest's tmp_path: its parent is private to root, and the cluster's user must
        # reach the directory.
        self.directory = Path(tempfile.mkdtemp(prefix="spread-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.running = False

    def _run(self, program: str, *args: str) -> None:
        as_user = ["runuser", "-u", CLUSTER_USER, "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*as_user, str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} failed ({result.returncode}): {result.stderr[-2000:]}\nlog: {self.log_text()}"
            )

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.directory, CLUSTER_USER, CLUSTER_USER)
        self._run("initdb", "-D", str(self.data), *INITDB_OPTIONS)
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self.running = True

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are cut, committed work is kept)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, dbname: str) -> str:
        """Create ``dbname`` on the cluster; return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{dbname}"')
        return self.url(dbname)

    def destroy(self) -> None:
        try:
            if self.running:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
                self.running = False
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
