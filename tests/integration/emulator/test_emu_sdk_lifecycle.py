"""The official openai SDK, as an outside client, against ``python -m runtime emulator``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")

REPO_ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}},
            "required": ["location"],
        },
    },
}


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """``python -m runtime emulator`` on a free port (port 0), stopped with SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "emulator", "--port", "0", "--run-ttl", "30"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield match.group(1)
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


@pytest.fixture(scope="module")
def client(server_url: str) -> Iterator[Any]:
    """A synchronous OpenAI client on the emulator's /v1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        sdk = openai.OpenAI(base_url=server_url + "/v1", api_key="sk-test", max_retries=0)
    with sdk:
        yield sdk


class Recorder(openai.AssistantEventHandler):  # type: ignore[misc]
    """Remembers event names and tool calls as the SDK reports them."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.tool_names: list[str] = []

    def on_event(self, event: Any) -> None:
        self.events.append(event.event)

    def on_tool_call_created(self, tool_call: Any) -> None:
        self.tool_names.append(tool_call.function.name)


def test_whole_lifecycle_with_the_official_sdk(client: Any) -> None:
    """assistants, threads, stream to requires_action, 400s, submit stream, lists, update."""
    beta = client.beta
    assistant = beta.assistants.create(model="gpt-4o", instructions="Be brief.", tools=[WEATHER])
    thread = beta.threads.create()
    beta.threads.messages.create(
        thread.id,
        role="user",
        content='Weather?\n/call get_weather {"location": "Paris"}\n/call get_weather {"location": "Lima"}',
    )
    recorder = Recorder()
    with beta.threads.runs.stream(
        thread_id=thread.id, assistant_id=assistant.id, event_handler=recorder
    ) as stream:
        stream.until_done()
        run = stream.current_run
    assert run.status == "requires_action"
    assert recorder.tool_names == ["get_weather", "get_weather"]
    assert recorder.events[-1] == "thread.run.requires_action"
    calls = run.required_action.submit_tool_outputs.tool_calls
    assert [json.loads(c.function.arguments) for c in calls] == [
        {"location": "Paris"},
        {"location": "Lima"},
    ]

    with pytest.raises(openai.BadRequestError, match="already has an active run"):
        beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    with pytest.raises(openai.BadRequestError, match="Can't add messages"):
        beta.threads.messages.create(thread.id, role="user", content="hurry")
    with pytest.raises(openai.BadRequestError, match="Expected tool outputs"):
        beta.threads.runs.submit_tool_outputs(
            run_id=run.id,
            thread_id=thread.id,
            tool_outputs=[{"tool_call_id": calls[0].id, "output": "x"}],
        )

    outputs = [{"tool_call_id": c.id, "output": f"sunny in {i}"} for i, c in enumerate(calls)]
    with beta.threads.runs.submit_tool_outputs_stream(
        run_id=run.id, thread_id=thread.id, tool_outputs=outputs, event_handler=Recorder()
    ) as stream:
        stream.until_done()
        final = stream.current_run
        reply = stream.get_final_messages()[0].content[0].text.value
    assert final.status == "completed"
    assert reply == "get_weather returned: sunny in 0\nget_weather returned: sunny in 1"

    messages = beta.threads.messages.list(thread_id=thread.id, order="asc")
    assert [m.role for m in messages.data] == ["user", "assistant"]
    steps = beta.threads.runs.steps.list(run_id=run.id, thread_id=thread.id, order="asc")
    assert [s.type for s in steps.data] == ["tool_calls", "message_creation"]
    assert [c.function.output for c in steps.data[0].step_details.tool_calls] == [
        o["output"] for o in outputs
    ]
    runs = beta.threads.runs.list(thread_id=thread.id)
    assert [r.id for r in runs.data] == [run.id]

    polled = beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20
    )
    assert polled.status == "completed" and polled.usage.total_tokens > 0
    updated = beta.threads.runs.update(
        run_id=polled.id, thread_id=thread.id, metadata={"reviewed": "yes"}
    )
    assert updated.metadata == {"reviewed": "yes"}
    assert beta.threads.runs.retrieve(run_id=polled.id, thread_id=thread.id).metadata == {
        "reviewed": "yes"
    }


def test_cancel_and_incomplete_with_the_official_sdk(client: Any) -> None:
    """cancel reaches cancelled; max_completion_tokens ends incomplete."""
    beta = client.beta
    assistant = beta.assistants.create(model="gpt-4o", tools=[WEATHER])
    thread = beta.threads.create(
        messages=[{"role": "user", "content": '/call get_weather {"location": "Oslo"}'}]
    )
    run = beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20
    )
    assert run.status == "requires_action"
    assert beta.threads.runs.cancel(run_id=run.id, thread_id=thread.id).status == "cancelling"
    deadline = time.monotonic() + 5
    while (
        run := beta.threads.runs.retrieve(run_id=run.id, thread_id=thread.id)
    ).status != "cancelled":
        assert time.monotonic() < deadline, run.status
        time.sleep(0.02)

    short = beta.threads.runs.create_and_poll(
        thread_id=thread.id,
        assistant_id=assistant.id,
        max_completion_tokens=2,
        additional_messages=[{"role": "user", "content": "tell me a long story please"}],
        poll_interval_ms=20,
    )
    assert short.status == "incomplete"
    assert short.incomplete_details.reason == "max_completion_tokens"

    created = beta.threads.create_and_run_poll(
        assistant_id=assistant.id,
        thread={"messages": [{"role": "user", "content": "hello there"}]},
        poll_interval_ms=20,
    )
    assert created.status == "completed"
    text = beta.threads.messages.list(thread_id=created.thread_id).data[0].content[0].text.value
    assert text == "You said: hello there"


def test_cli_refuses_remote_host_and_bad_specs() -> None:
    """A non-loopback --host needs --allow-remote; a bad --faults spec is a usage error."""
    from runtime.emulator.cli import main

    assert main(["--host", "0.0.0.0", "--port", "0"]) == 2
    assert main(["--port", "0", "--faults", "429=5"]) == 2
    assert main(["--port", "0", "--scenario", str(REPO_ROOT / "missing.toml")]) == 2
