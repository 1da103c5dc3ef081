"""Test helpers for projects using Spread: run a real node process on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

READY_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveNode:
    """A ``manage.py spread_node`` process with its own database, on a loopback port.

    ``env`` is added to the current environment (set ``DATABASE_URL`` for the node's database).
    ``kill()`` sends SIGKILL, ``stop()`` SIGTERM; ``start()`` again restarts on the same port.
    """

    def __init__(
        self,
        manage_py: str | Path,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        log_path: str | Path | None = None,
    ) -> None:
        self.manage_py = str(manage_py)
        self.env = {**os.environ, **env}
        self.port = port or free_port()
        self.log_path = Path(log_path) if log_path else None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveNode:
        command = [sys.executable, self.manage_py, "spread_node", "--bind", f"127.0.0.1:{self.port}"]
        cwd = str(Path(self.manage_py).parent)
        if self.log_path:
            with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
                self.process = subprocess.Popen(
                    command, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
                )
        else:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=cwd
            )
        self.wait_ready()
        return self

    def manage(self, *args: str) -> str:
        """Run ``manage.py ARGS`` against this node's database and settings; return its output."""
        result = subprocess.run(
            [sys.executable, self.manage_py, *args],
            env=self.env,
            cwd=str(Path(self.manage_py).parent),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"node exited with {self.process.returncode}; log: {self.log_text()}")
            try:
                httpx.get(f"{self.url}/api/schema/", timeout=2.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise TimeoutError(f"node on port {self.port} not ready; log: {self.log_text()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> LiveNode:
        self.stop()
        return self.start()

    def __enter__(self) -> LiveNode:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
