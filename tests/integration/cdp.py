"""A headless Chromium driven over the Chrome DevTools Protocol with aiohttp's websocket client.

``async with Chromium.launch() as browser: page = await browser.open(url)`` starts the system
chromium in its own process group (killed whole on exit, its profile directory removed),
then talks to one page target: ``evaluate`` JavaScript, ``wait_for`` a condition,
``screenshot``. Uncaught page exceptions are collected in ``page.exceptions``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--window-size=1000,800",
)
LISTENING = re.compile(rb"DevTools listening on (ws://\S+)")


def find_chromium() -> str | None:
    """The chromium binary: ``$CHROMIUM``, else ``chromium`` on PATH, else Debian's path."""
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


class CDPError(RuntimeError):
    """A DevTools command failed, or JavaScript threw."""


class Page:
    """One page target: commands, events and uncaught exceptions."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.exceptions: list[str] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._loaded = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command and return its result."""
        command_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self.ws.send_json({"id": command_id, "method": method, "params": params})
        return await asyncio.wait_for(future, 15.0)

    async def _read(self) -> None:
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(CDPError(json.dumps(data["error"])))
                    else:
                        future.set_result(data.get("result", {}))
            elif data.get("method") == "Runtime.exceptionThrown":
                details = data["params"]["exceptionDetails"]
                exception = details.get("exception", {})
                self.exceptions.append(exception.get("description") or details.get("text", ""))
            elif data.get("method") == "Page.loadEventFired":
                self._loaded.set()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(CDPError("the DevTools connection closed"))

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), 15.0)

    async def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page (promises awaited) and return its JSON value."""
        reply = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            description = details.get("exception", {}).get("description") or details["text"]
            raise CDPError(f"{expression!r} threw: {description}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 10.0) -> Any:
        """Poll ``expression`` until it is truthy; return its value (CDPError on timeout)."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise CDPError(f"still falsy after {timeout_s} s: {expression}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport."""
        reply = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(reply["data"]))
        return path

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


class Chromium:
    """A running headless chromium and a DevTools HTTP/websocket session to it."""

    def __init__(self, process: asyncio.subprocess.Process, endpoint: str) -> None:
        self.process = process
        self.endpoint = endpoint  # http://127.0.0.1:PORT
        self.session = aiohttp.ClientSession()

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, binary: str) -> AsyncIterator[Chromium]:
        """Start chromium; on exit kill its whole process group and remove its profile."""
        profile = tempfile.mkdtemp(prefix="chromium-profile-")
        process = await asyncio.create_subprocess_exec(
            binary,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # its own process group: the zygote and renderers die too
        )
        drain: asyncio.Task[None] | None = None
        browser: Chromium | None = None
        try:
            assert process.stderr is not None
            ws_url = await asyncio.wait_for(_listening_url(process.stderr), 20.0)
            drain = asyncio.create_task(_drain(process.stderr))  # a full pipe would block it
            browser = cls(process, "http://" + ws_url.split("/")[2])
            yield browser
        finally:
            if browser is not None:
                await browser.session.close()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            if drain is not None:
                await asyncio.gather(drain, return_exceptions=True)
            shutil.rmtree(profile, ignore_errors=True)

    async def open(self, url: str) -> Page:
        """Attach to the first page target and load ``url`` in it."""
        async with self.session.get(self.endpoint + "/json/list") as response:
            targets = await response.json()
        target = next(t for t in targets if t["type"] == "page")
        ws = await self.session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        await page.goto(url)
        return page


async def _listening_url(stderr: asyncio.StreamReader) -> str:
    seen: list[bytes] = []
    async for line in stderr:
        match = LISTENING.search(line)
        if match:
            return match.group(1).decode()
        seen.append(line)
    raise CDPError("chromium exited before DevTools listened:\n" + b"".join(seen[-20:]).decode())


async def _drain(stderr: asyncio.StreamReader) -> None:
    while await stderr.read(65536):
        pass
