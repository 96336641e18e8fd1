"""Servers bind loopback by default: the emulator (in process and CLI) and the worker endpoints."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from runtime.emulator import Emulator, EmulatorError
from runtime.emulator.cli import _parser as emulator_parser
from runtime.emulator.cli import main as emulator_main
from runtime.worker.http import HealthServer
from runtime.worker.settings import HttpSettings

REPO_ROOT = Path(__file__).resolve().parents[2]


def listening_addresses(pid: int, port: int) -> list[str]:
    """Addresses a process listens on for ``port``."""
    conns = psutil.Process(pid).net_connections(kind="inet")
    return [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == port]


def all_loopback(addresses: list[str]) -> bool:
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


async def test_emulator_listens_on_loopback_only_by_default() -> None:
    """Emulator() binds 127.0.0.1, and nothing else, on its port."""
    async with Emulator() as emu:
        assert emu.host == "127.0.0.1"
        addresses = listening_addresses(os.getpid(), emu.port)
    assert all_loopback(addresses), addresses


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com"])
def test_emulator_refuses_remote_hosts_without_consent(host: str) -> None:
    """A non-loopback host is refused unless allow_remote=True is passed explicitly."""
    with pytest.raises(EmulatorError, match="non-loopback"):
        Emulator(host=host)
    Emulator(host=host, allow_remote=True)  # consent given: accepted (not started)


def test_emulator_cli_defaults_to_loopback_and_refuses_remote() -> None:
    """The CLI's default --host is 127.0.0.1; --host 0.0.0.0 without --allow-remote exits 2."""
    assert emulator_parser().parse_args([]).host == "127.0.0.1"
    assert emulator_main(["--host", "0.0.0.0", "--port", "0"]) == 2


def test_standalone_emulator_process_binds_loopback() -> None:
    """``python -m runtime emulator --port 0`` listens on loopback only."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "emulator", "--port", "0"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        assert banner.startswith("emulator listening on http://127.0.0.1:"), banner
        port = int(banner.split("http://127.0.0.1:")[1].split()[0])
        assert all_loopback(listening_addresses(proc.pid, port))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_worker_health_endpoints_bind_loopback_by_default() -> None:
    """The worker's /healthz + /metrics server and its settings default to loopback."""
    assert HttpSettings().host == "127.0.0.1"
    worker: Any = None  # binding needs no worker; only the handlers read it
    server = HealthServer(worker, port=0)
    await server.start()
    try:
        addresses = listening_addresses(os.getpid(), server.port)
    finally:
        await server.aclose()
    assert all_loopback(addresses), addresses
