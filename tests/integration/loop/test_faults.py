"""Stream loss, silent streams, ambiguous creates, hostile ids and clocks, on both protocols."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import pytest
import structlog

from runtime import EventHandler
from runtime.assistants.client import AssistantsClient
from runtime.responses import ResponsesClient

from .conftest import FAST, Driver, OpenDriver, Probe, Watch, call, fast

# Long enough that a cut after 9 events lands mid-text on both protocols (Assistants sends
# 7 events before the first delta, Responses 4).
LABEL = "alpha beta gamma delta epsilon zeta eta theta"
TOOL_TEXT = f"slow returned: slept 0.01 ({LABEL})"
WORDS = "one two three four five six seven eight nine ten eleven twelve"
MID_TEXT = 9


@pytest.mark.parametrize(
    ("where", "after"),
    [
        ("start", 2),  # the turn is named: recovered by polling it
        ("start", 5),
        ("submit", 2),
        ("submit", MID_TEXT),  # the final text was half streamed
        ("text", MID_TEXT),  # a text-only turn, half streamed
    ],
)
async def test_a_cut_stream_is_recovered_once_with_the_servers_text(
    driver: Driver, probe: Probe, where: str, after: int
) -> None:
    """A stream cut after N events (on the start or on the submit) is recovered: one run or
    response chain, each tool ran once, and the text is what the server stored, never a
    partial stream joined to the full text."""
    if where == "submit":
        driver.inject_on_submit("cut", after=after)
    else:
        driver.inject_on_create("cut", after=after)
    text = WORDS if where == "text" else call("slow", seconds=0.01, label=LABEL)
    result = await driver.run(text)
    assert result.status == "completed", result
    assert result.recoveries >= 1
    expected = f"You said: {WORDS}" if where == "text" else TOOL_TEXT
    assert result.text == expected
    assert result.text == await driver.stored_text(result)
    rounds = 0 if where == "text" else 1
    assert result.rounds == rounds
    assert driver.turns_created() == driver.one_chain(rounds)
    assert driver.start_requests() == 1
    assert len(driver.submit_requests()) == rounds
    assert probe.total == rounds and all(n == 1 for n in probe.calls.values())


@pytest.mark.parametrize(("where", "after"), [("start", 5), ("submit", MID_TEXT)])
async def test_a_cut_stream_of_a_cancellable_turn_is_recovered_once(
    driver: Driver, probe: Probe, where: str, after: int
) -> None:
    """The same cut on a background response (whose stream the client may try to re-open):
    one recovery, one chain, the server's text. A server that answers the re-open with a
    plain JSON object (not a stream) is polled at once, not re-opened again and again."""
    inject = driver.inject_on_submit if where == "submit" else driver.inject_on_create
    inject("cut", after=after)
    result = await driver.run(call("slow", seconds=0.01, label=LABEL), **driver.cancellable)
    assert result.status == "completed" and result.text == TOOL_TEXT
    assert result.text == await driver.stored_text(result)
    assert result.recoveries == 1, "the broken stream was re-opened again and again"
    assert driver.turns_created() == driver.one_chain(rounds=1)
    assert probe.total == 1


class Deltas(EventHandler):
    """Collects the text deltas the handler was given."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def on_text_delta(self, delta: str, snapshot: Any) -> None:
        self.seen.append(delta)


@pytest.mark.parametrize(("where", "after"), [("start", 5), ("submit", MID_TEXT)])
async def test_a_broken_background_stream_is_resumed_after_its_last_event(
    open_driver: OpenDriver, probe: Probe, where: str, after: int
) -> None:
    """A stream broken mid-way, where the server can replay it: Responses re-opens a
    background response's stream after the last sequence number seen and the text is the
    server's, each delta once (no partial text joined to the full one). Assistants streams
    cannot be re-opened: the run is polled instead, with the same outcome."""
    driver = await open_driver(proxy=True)
    proxy = driver.proxy
    assert proxy is not None
    proxy.cut_streams, proxy.cut_after = 1, after
    proxy.cut_skip = 1 if where == "submit" else 0
    deltas = Deltas()
    result = await driver.run(
        call("slow", seconds=0.01, label=LABEL), handler=deltas, **driver.cancellable
    )
    assert result.status == "completed" and result.text == TOOL_TEXT
    assert result.text == await driver.stored_text(result)
    assert result.recoveries == 1 and proxy.cut_streams == 0
    streamed = "".join(deltas.seen)
    if driver.is_assistants:
        assert result.text.startswith(streamed)  # the rest was polled, never streamed
    else:
        assert streamed == result.text, "a resumed stream repeated or skipped deltas"
    assert proxy.reopened == (0 if driver.is_assistants else 1)
    assert driver.turns_created() == driver.one_chain(rounds=1)
    assert probe.total == 1 and len(driver.submit_requests()) == 1


@pytest.mark.parametrize("silence", ["keep_alive", "stall"])
@pytest.mark.parametrize("where", ["start", "submit"])
async def test_a_silent_stream_hits_the_idle_timeout_and_is_recovered(
    open_driver: OpenDriver, probe: Probe, where: str, silence: str
) -> None:
    """A stream that goes silent (no bytes at all, or only ``: keep-alive`` comments, which
    must not count as events) is given up after stream_idle_timeout_s, and the run recovers
    by polling instead of hanging. (Resumable streams are off: re-opening a silent stream is
    the lossless-stream tests' subject; here the recovery is the poll.)"""
    policy = replace(FAST, resumable_streams=False)
    # Long enough that a healthy stream on a loaded machine never looks silent.
    driver = await open_driver(proxy=True, client={"stream_idle_timeout_s": 0.6}, policy=policy)
    proxy = driver.proxy
    assert proxy is not None
    if silence == "stall":
        inject = driver.inject_on_submit if where == "submit" else driver.inject_on_create
        inject("stall", after=2)
    else:
        proxy.keepalive_skip = 1 if where == "submit" else 0
        proxy.keepalive_streams = 1
    started = time.monotonic()
    result = await driver.run(call("add", a=2, b=2))
    assert time.monotonic() - started < 5.0
    assert result.status == "completed" and result.text == "add returned: 4"
    assert result.recoveries == 1
    assert proxy.keepalive_streams == 0 and driver.emu.stats["pending_injected_faults"] == 0
    assert driver.turns_created() == driver.one_chain(rounds=1)
    assert probe.calls["add:2+2"] == 1


@pytest.mark.parametrize("kind", ["500_after", "reset_after"])
async def test_an_ambiguous_create_is_adopted_or_sent_again(
    driver: Driver, probe: Probe, kind: str
) -> None:
    """The server created the turn but the answer was lost. Assistants finds the run by its
    idempotency key and adopts it (exactly one run; on_turn names it, so a worker can store
    it). Responses cannot list responses: the request is sent again, and the first response
    is a duplicate nobody follows (the protocol's limit); on_turn names the one driven."""
    driver.inject_on_create(kind)
    watch = Watch()
    result = await driver.run(call("add", a=3, b=4), handler=watch)
    assert result.status == "completed" and result.text == "add returned: 7"
    assert probe.calls["add:3+4"] == 1
    assert len(driver.submit_requests()) == 1
    if driver.is_assistants:
        assert driver.turns_created() == 1
        assert driver.start_requests() == 1
        assert watch.turns == [result.run_id]
    else:
        assert driver.turns_created() == 1 + driver.one_chain(rounds=1)  # one duplicate
        assert driver.start_requests() == 2
        assert len(watch.turns) == 2 and watch.turns[-1] == result.run_id
        assert result.raw is not None and result.raw.previous_response_id == watch.turns[0]


@pytest.mark.parametrize("where", ["start", "submit"])
async def test_a_stream_cut_before_the_turn_is_named(
    driver: Driver, probe: Probe, where: str
) -> None:
    """Cut before the first event. Assistants adopts its run by key, or (on a submit) polls
    the run it knows: one run. Responses sends the request again: the unseen response is a
    duplicate nobody follows (the protocol's limit). No tool runs twice either way."""
    inject = driver.inject_on_submit if where == "submit" else driver.inject_on_create
    inject("cut", after=0)
    result = await driver.run(call("add", a=1, b=1))
    assert result.status == "completed" and result.text == "add returned: 2"
    assert probe.calls["add:1+1"] == 1
    extra = 0 if driver.is_assistants else 1
    assert driver.turns_created() == driver.one_chain(rounds=1) + extra
    assert result.text == await driver.stored_text(result)


@pytest.mark.parametrize("kind", ["429", "503", "500", "reset"])
async def test_a_create_refused_before_the_server_acted_is_retried(
    driver: Driver, probe: Probe, kind: str
) -> None:
    """429/500/503/reset before anything was created: sent again, exactly one chain."""
    params: dict[str, Any] = {"retry_after_ms": 20} if kind in ("429", "503") else {}
    driver.inject_on_create(kind, **params)
    result = await driver.run(call("add", a=5, b=5))
    assert result.status == "completed" and result.text == "add returned: 10"
    assert driver.turns_created() == driver.one_chain(rounds=1)
    assert probe.calls["add:5+5"] == 1
    assert driver.emu.stats["faults"][kind] == 1


@pytest.mark.parametrize("kind", ["429", "503", "500", "reset", "reset_after", "500_after"])
async def test_faults_on_the_submit_never_run_a_tool_twice(
    driver: Driver, probe: Probe, kind: str
) -> None:
    """Any fault on the tool-output submission: the outputs are accepted once (Assistants)
    or the round completes (Responses), and no tool runs again."""
    params: dict[str, Any] = {"retry_after_ms": 20} if kind in ("429", "503") else {}
    driver.inject_on_submit(kind, **params)
    result = await driver.run(call("add", a=6, b=6))
    assert result.status == "completed" and result.text == "add returned: 12"
    assert probe.calls["add:6+6"] == 1
    assert driver.emu.stats["faults"][kind] == 1
    if driver.is_assistants:
        assert driver.turns_created() == 1
        assert driver.emu.stats["tool_output_submissions"] == 1


def hostile_calls(client: AssistantsClient | ResponsesClient) -> list[Any]:
    if isinstance(client, AssistantsClient):
        return [
            client.retrieve_thread("../assistants/X"),
            client.retrieve_run("thread_1", "../../assistants/X"),
            client.cancel_run("thread_1/runs/other", "run_1"),
        ]
    return [
        client.cancel("../batches/B"),
        client.retrieve("resp_1?x=1"),
        client.delete(".."),
    ]


async def test_ids_are_checked_before_any_request(driver: Driver) -> None:
    """An id that would address another resource (``../``, ``/``, ``?``) raises ValueError
    before anything is sent."""
    before = len(driver.emu.requests)
    for pending in hostile_calls(driver.client):
        with pytest.raises(ValueError, match="not a valid id"):
            await pending
    assert len(driver.emu.requests) == before


async def test_a_skewed_date_header_does_not_expire_tools(
    open_driver: OpenDriver, probe: Probe
) -> None:
    """A Date header hours off is reported once (http.clock_skew_ignored) and ignored:
    server_now() stays near local time and tools are not timed out by expires_at."""
    driver = await open_driver(proxy=True, policy=fast(expiry_margin_s=10.0))
    assert driver.proxy is not None
    driver.proxy.date_offset_s = 3 * 3600.0
    with structlog.testing.capture_logs() as logs:
        result = await driver.run(call("slow", seconds=0.2, label="skew"))
    assert result.status == "completed"
    (tool,) = result.tool_calls
    assert not tool.is_error, tool.output
    assert abs(driver.client.server_now() - time.time()) < 5.0
    skews = [e for e in logs if e["event"] == "http.clock_skew_ignored"]
    assert len(skews) == 1 and skews[0]["offset_s"] > 3000
