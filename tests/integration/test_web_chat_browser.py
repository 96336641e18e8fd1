"""The example web chat (examples/web_chat.py) driven in a real headless Chromium over CDP.

One chromium and one app (keep-alive every 0.5 s) serve the whole module; each test loads the
page afresh, types into it, clicks its buttons and asserts the text a person would see. Set
``WEB_CHAT_SCREENSHOTS=/some/dir`` to save a screenshot at the end of each scenario.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from .cdp import Chromium, Page, find_chromium

CHROMIUM = find_chromium()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "web_chat.py"
KEEPALIVE_S = 0.5

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(60),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="no chromium binary ($CHROMIUM, PATH, /usr/bin/chromium); .ci/chromium.sh installs it",
    ),
]

LAST_TURN = """(() => {
  const turns = document.querySelectorAll(".turn");
  const turn = turns[turns.length - 1];
  if (!turn) return null;
  const text = (selector) => { const e = turn.querySelector(selector); return e ? e.innerText : null; };
  return {
    text: turn.innerText,
    status: text(".status"),
    tools: [...turn.querySelectorAll(".tool")].map((e) => e.innerText),
    assistant: text(".assistant"),
    end: text(".end"),
    runId: turn.dataset.runId || null,
    threadId: turn.dataset.threadId || null,
    sendDisabled: document.getElementById("send").disabled,
    cancelDisabled: document.getElementById("cancel").disabled,
  };
})()"""


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("web_chat_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class ChatSite:
    """The example app on a loopback port, and a browser page on it."""

    def __init__(self, module: ModuleType, app: web.Application, url: str, browser: Chromium):
        self.module, self.app, self.url, self.browser = module, app, url, browser
        self.page: Page | None = None

    async def fresh_page(self) -> Page:
        if self.page is None:
            self.page = await self.browser.open(self.url)
        else:
            await self.page.goto(self.url)
        self.page.exceptions.clear()
        return self.page


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def site() -> AsyncIterator[ChatSite]:
    assert CHROMIUM is not None
    module = load_example()
    app = module.build_app(keepalive_s=KEEPALIVE_S)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        async with Chromium.launch(CHROMIUM) as browser:
            chat = ChatSite(module, app, url, browser)
            yield chat
            if chat.page is not None:
                await chat.page.close()
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def page(site: ChatSite, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    page = await site.fresh_page()
    yield page
    shots = os.environ.get("WEB_CHAT_SCREENSHOTS")
    if shots:
        await page.screenshot(Path(shots) / f"{request.node.name}.png")


async def send(page: Page, message: str | None = None) -> None:
    """Type ``message`` into the box (None: keep the page's sample text) and click Send."""
    if message is not None:
        await page.evaluate(
            "(() => { const box = document.getElementById('message');"
            " box.focus(); box.select(); })()"
        )
        await page.send("Input.insertText", text=message)
    await page.evaluate("document.getElementById('send').click()")


async def last_turn(page: Page) -> dict[str, Any]:
    turn = await page.evaluate(LAST_TURN)
    assert turn is not None
    return dict(turn)


async def finished_turn(page: Page, timeout_s: float = 10.0) -> dict[str, Any]:
    """Wait until the last turn shows how its run ended, then read it."""
    await page.wait_for(
        "(() => { const t = document.querySelectorAll('.turn');"
        " return t.length > 0 && t[t.length - 1].querySelector('.end') !== null; })()",
        timeout_s,
    )
    return await last_turn(page)


async def wait_for_tool_line(page: Page, prefix: str) -> None:
    await page.wait_for(
        f"[...document.querySelectorAll('.tool')].some((e) => e.innerText.startsWith({json.dumps(prefix)}))"
    )


async def test_plain_reply_shows_each_status_once(page: Page) -> None:
    """A message gets the model's reply, and the status trail says "queued" once, not twice."""
    await send(page, "hello there")
    turn = await finished_turn(page)
    assert turn["assistant"] == "assistant: You said: hello there"
    assert turn["status"] == "run: queued \u2192 in_progress \u2192 completed"
    assert turn["text"].count("queued") == 1
    assert turn["end"] == "run completed"
    assert turn["tools"] == []
    assert not turn["sendDisabled"] and turn["cancelDisabled"]
    assert page.exceptions == []


async def test_tools_show_running_then_results_and_thread_continues(page: Page) -> None:
    """The sample message shows both tools running, their results, the answer; a second
    message continues the same thread."""
    await send(page)  # the page's own sample text: get_weather (0.8 s) and calculate
    await wait_for_tool_line(page, "\u23f3 get_weather")
    turn = await finished_turn(page)
    assert turn["status"] == (
        "run: queued \u2192 in_progress \u2192 requires_action"
        " \u2192 queued \u2192 in_progress \u2192 completed"
    )
    assert len(turn["tools"]) == 2
    assert re.fullmatch(
        r"\u2713 get_weather \([\d.]+ s\) \u2192 clear, 18 C in Rome", turn["tools"][0]
    )
    assert re.fullmatch(r"\u2713 calculate \([\d.]+ s\) \u2192 144", turn["tools"][1])
    assert turn["assistant"] == (
        "assistant: get_weather returned: clear, 18 C in Rome\ncalculate returned: 144"
    )
    assert turn["end"] == "run completed"
    first_thread = turn["threadId"]

    await send(page, "thanks")
    again = await finished_turn(page)
    assert again["assistant"] == "assistant: You said: thanks"
    assert again["threadId"] == first_thread
    assert await page.evaluate("document.querySelectorAll('.turn').length") == 2
    assert page.exceptions == []


async def count_keepalives(url: str, message: str) -> int:
    """POST /chat outside the browser and count the keep-alive comments of its stream."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + "chat", json={"message": message}) as response,
    ):
        body = await response.read()
    return body.count(b"\n: keep-alive\n")


async def test_slow_tool_outlasts_keepalives(page: Page, site: ChatSite) -> None:
    """A tool running 2 s under 0.5 s keep-alive comments: the page keeps going to the answer."""
    message = '/call slow_report {"seconds": 2}'
    keepalives = asyncio.create_task(count_keepalives(site.url, message))
    await send(page, message)
    await wait_for_tool_line(page, "\u23f3 slow_report")
    turn = await finished_turn(page)
    assert await keepalives >= 2  # the same run outside the browser: comments were sent
    assert re.fullmatch(
        r"\u2713 slow_report \([\d.]+ s\) \u2192 report ready after 2 s", turn["tools"][0]
    )
    assert turn["assistant"] == "assistant: slow_report returned: report ready after 2 s"
    assert turn["end"] == "run completed"
    assert page.exceptions == []


async def test_unknown_tool_shows_its_error_and_the_run_goes_on(page: Page) -> None:
    """A call of an unregistered tool (no tool_started, only tool_finished) shows as an
    error line beside a working call, and the run completes."""
    await send(page, '/call no_such_tool {"x": 1}\n/call calculate {"expression": "2 + 3"}')
    turn = await finished_turn(page)
    assert turn["end"] == "run completed", turn
    [unknown] = [line for line in turn["tools"] if "no_such_tool" in line]
    assert unknown.startswith("\u2717 no_such_tool (")
    assert "\u2192 unknown_tool: no tool named 'no_such_tool'; available tools:" in unknown
    assert any(
        re.fullmatch(r"\u2713 calculate \([\d.]+ s\) \u2192 5", line) for line in turn["tools"]
    )
    assert "no_such_tool returned: {" in turn["assistant"]
    assert "calculate returned: 5" in turn["assistant"]
    assert page.exceptions == []


async def test_cancel_button_cancels_the_run(page: Page, site: ChatSite) -> None:
    """Cancel during a 30 s tool: the page says the run was cancelled, the tool stopped, and
    the run on the server ends cancelled."""
    await send(page, '/call slow_report {"seconds": 30}')
    await wait_for_tool_line(page, "\u23f3 slow_report")
    running = await last_turn(page)
    assert running["cancelDisabled"] is False and running["sendDisabled"] is True
    await page.evaluate("document.getElementById('cancel').click()")
    turn = await finished_turn(page)
    assert turn["end"].startswith("run cancelled")
    assert turn["status"].endswith("\u2192 cancelled")
    assert turn["tools"] == ["\u25a0 slow_report stopped"]
    assert turn["assistant"] is None
    assert not turn["sendDisabled"] and turn["cancelDisabled"]
    client = site.app[site.module.CLIENT]
    run = await client.retrieve_run(turn["threadId"], turn["runId"])
    assert run.status == "cancelled"
    assert page.exceptions == []


SSE_CASES = """(() => {
  const run = (chunks) => { const p = new SseParser(); return chunks.flatMap((c) => p.feed(c)); };
  return {
    comments: run([": keep-alive\\n\\n", "event: a\\ndata: 1\\n\\n", ":x\\n\\n"]),
    multiline: run(["event: t\\ndata: one\\ndata:two\\ndata\\n\\n"]),
    split: run(["ev", "ent: text\\nda", "ta: {\\"k\\":", "1}\\n", "\\n", "data: 2\\n"]),
    crlf: run(["event: a\\r\\ndata: x\\r", "\\n\\r", "\\ndata: y\\r\\rdata: w\\n\\n"]),
    defaults: run(["data: no type\\n\\nevent: lonely\\n\\nid: 7\\nretry: 10\\ndata: z\\n\\n"]),
  };
})()"""


async def test_sse_parser_follows_the_standard(page: Page) -> None:
    """The page's parser ignores comments, joins data lines, survives any chunk split and
    CR/LF/CRLF line ends, and dispatches nothing without data."""
    cases = await page.evaluate(SSE_CASES)
    assert cases["comments"] == [{"event": "a", "data": "1"}]
    assert cases["multiline"] == [{"event": "t", "data": "one\ntwo\n"}]
    assert cases["split"] == [{"event": "text", "data": '{"k":1}'}]  # "data: 2" never ended
    assert cases["crlf"] == [
        {"event": "a", "data": "x"},
        {"event": "message", "data": "y"},
        {"event": "message", "data": "w"},
    ]
    assert cases["defaults"] == [
        {"event": "message", "data": "no type"},
        {"event": "message", "data": "z"},
    ]


async def test_bad_requests_get_clear_errors(site: ChatSite) -> None:
    """/chat and /cancel answer 400 to a body that is not a JSON object or lacks a message,
    and 404 to a cancel of a run not streaming here."""
    async with aiohttp.ClientSession() as session:
        for path, body, status, text in [
            ("chat", "{not json", 400, "must be JSON"),
            ("chat", "[1, 2]", 400, "JSON object"),
            ("chat", '{"message": "  "}', 400, "message is required"),
            ("cancel", '{"run_id": "run_nope"}', 404, "no run 'run_nope'"),
        ]:
            async with session.post(site.url + path, data=body) as response:
                assert response.status == status, path
                assert text in await response.text()


def live_group_members(pgid: int) -> list[int]:
    """Processes (zombies aside) whose process group is ``pgid``."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


async def test_chromium_leaves_no_process_behind() -> None:
    """The launcher kills chromium's whole process group (zygote, renderers) on exit."""
    assert CHROMIUM is not None
    async with Chromium.launch(CHROMIUM) as browser:
        page = await browser.open("about:blank")
        assert await page.evaluate("1 + 1") == 2
        pgid = browser.process.pid
        assert len(live_group_members(pgid)) > 1  # the launcher script's chromium and helpers
        await page.close()
    for _ in range(60):  # SIGKILLed processes may take a moment to finish exiting
        if not live_group_members(pgid):
            break
        await asyncio.sleep(0.05)
    assert live_group_members(pgid) == []
