"""A real Patron server in a subprocess, for tests that need real concurrent HTTP requests.

The server runs `uvicorn patron.app:create_app --factory` on 127.0.0.1 against the test's database,
in its own process group, so that `kill()` (SIGKILL, as a crash would) takes the worker processes
down with the master. `start()` may be called again after `stop()` or `kill()`: the server comes
back on the same port, as a restarted service would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, db_url: str, secret: str, log_dir: Path, *, workers: int = 1) -> None:
        self.db_url = db_url
        self.secret = secret
        self.workers = workers
        self.port = free_port()
        self.log_path = log_dir / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        assert self.proc is None, "already running"
        env = {
            **os.environ,
            "PATRON_DATABASE_URL": self.db_url,
            "PATRON_SECRET": self.secret,
            "PATRON_LOG_LEVEL": "WARNING",
            "PATRON_ENV": "development",
        }
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "patron.app:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        # With several workers each must be up before the test fires, or the first requests all
        # land on one process; a few healthy answers in a row are a good enough sign.
        healthy = 0
        with httpx.Client(base_url=self.base_url, timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    if client.get("/health").status_code == 200:
                        healthy += 1
                        if healthy >= 3 * self.workers:
                            return
                except httpx.TransportError:
                    healthy = 0
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"server not healthy after {timeout}s:\n{self.log_tail()}")
                time.sleep(0.05)

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)  # the group we created with start_new_session

    def kill(self) -> None:
        """Crash the server: SIGKILL to the master and its workers, no chance to clean up."""
        if self.proc is None:
            return
        self._signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Workers that outlived the master would hold connections to the test database.
        self._signal(signal.SIGKILL)
        self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""
