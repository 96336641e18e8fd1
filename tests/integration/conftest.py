"""Fixtures of the integration tests that run the ``python -m runtime`` commands."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from runtime.__main__ import main
from runtime.logging import reset_logging

REPO_ROOT = Path(__file__).resolve().parents[2]
# What a subprocess of these tests never inherits: the vendor's and the runtime's settings.
API_SETTINGS = ("OPENAI_", "AZURE_OPENAI_", "RUNTIME_")


@dataclass(frozen=True)
class Ran:
    """What one in-process command printed and returned."""

    returncode: int
    stdout: str
    stderr: str


InProcess = Callable[..., Ran]
Run = Future[subprocess.CompletedProcess[str]]
"""One batched process: ``.result()`` is its completed process."""


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    """``cli(*args, env={...})`` (a None value unsets): ``python -m runtime ARGS`` through
    the same ``main(argv)`` in this process (no interpreter start-up), in the environment the
    tests give a subprocess (no API settings, the repository as cwd, stdin not a terminal).
    Call it through ``asyncio.to_thread`` from an async test (the command runs its own loop,
    and the test's loop may serve an emulator meanwhile). The logging the command configured
    is undone after each call."""
    for name in list(os.environ):
        if name.startswith(API_SETTINGS):
            monkeypatch.delenv(name)
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))  # a tools import may add the cwd
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    root = logging.getLogger()

    def invoke(*args: str, env: dict[str, str | None] | None = None) -> Ran:
        for name, value in (env or {}).items():
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        level = root.level
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors, as the interpreter would exit
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            reset_logging()
            root.setLevel(level)
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return invoke


# Independent subprocess checks of one module run this many at a time: each starts an
# interpreter (CPU), then mostly waits on loopback, pacing or its tools, so two per core keep
# the cores busy (the docs' blocks ran four at a time before they shared this batch).
BATCH_WORKERS = min(4, 2 * (os.cpu_count() or 1))


def selected(request: pytest.FixtureRequest) -> list[pytest.Function]:
    """The tests of ``request``'s module this session runs (a ``-k`` run starts only the
    processes its tests read)."""
    return [
        item
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
    ]


@pytest.fixture(scope="module")
def batch() -> Iterator[Callable[..., Run]]:
    """``batch(argv, **run_kwargs)``: start ``subprocess.run(argv, capture_output=True,
    text=True, timeout=60)`` now, beside the module's other batched processes
    (``BATCH_WORKERS`` at a time); ``.result()`` is its completed process. For processes
    whose checks do not depend on one another; all are reaped when the module ends."""
    with ThreadPoolExecutor(max_workers=BATCH_WORKERS) as pool:

        def start(argv: list[str], **kwargs: object) -> Run:
            options: dict[str, object] = {"capture_output": True, "text": True, "timeout": 60}
            return pool.submit(subprocess.run, argv, **{**options, **kwargs, "check": False})

        yield start
