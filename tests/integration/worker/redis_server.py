"""A redis-server of the test's own (own port, own directory) that a test can stop and restart.

Used by the outage tests: ``appendonly=True`` keeps every acknowledged write across a
SIGKILL (``appendfsync always``); ``appendonly=False`` starts empty after each restart, like
a production server without persistence.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_server_missing() -> str | None:
    """Why no private redis-server can be started here, or None."""
    return None if shutil.which("redis-server") else "no redis-server binary on PATH"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process on a free loopback port.

    Args:
        directory: its working directory (the append-only file lives there).
        appendonly: persist every write (and reload it on restart).
    """

    def __init__(self, directory: Path, *, appendonly: bool) -> None:
        self.directory = directory
        self.appendonly = appendonly
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        args = [
            "redis-server",
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--dir", str(self.directory),
            "--protected-mode", "yes",
        ]  # fmt: skip
        log = (self.directory / "redis.log").open("ab")
        try:
            self._proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (no shutdown save: only the append-only file survives)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None
