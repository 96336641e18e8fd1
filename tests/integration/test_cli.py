"""``python -m runtime demo``, ``run`` and ``submit`` over real HTTP: as subprocesses where the
test is about the process (a terminal, a signal, the exit status, what a user types), through
the same ``main(argv)`` in this process where it is about a command's logic."""

from __future__ import annotations

import asyncio
import io
import json
import os
import pty
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import astuple
from pathlib import Path

import pytest

from runtime import AssistantsClient
from runtime.cli import LiveView, call_signature, one_line, usage_fields
from runtime.core.backend import Usage
from runtime.emulator import Emulator
from tools import ToolCall, ToolCallResult

from .conftest import InProcess, Run, selected

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = REPO_ROOT / "config" / "scenarios"
VENDOR_VARS = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "AZURE_OPENAI_ENDPOINT",
    "AZURE_OPENAI_API_KEY",
    "OPENAI_API_VERSION",
)
DEMO_TOOLS = ("get_weather", "city_population", "get_current_time", "calculate")


def clean_env(**extra: str) -> dict[str, str]:
    """The current environment without API settings (vendor and RUNTIME_*), plus ``extra``."""
    env = {
        k: v for k, v in os.environ.items() if k not in VENDOR_VARS and not k.startswith("RUNTIME_")
    }
    env.update(extra)
    return env


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    """An in-process emulator playing a remote server for the subprocess."""
    async with Emulator() as emu:
        yield emu


MY_TOOLS = (
    "from tools import tool\n\n"
    "@tool\n"
    "def shout(text: str) -> str:\n"
    '    """Upper-case text."""\n'
    "    return text.upper()\n"
)


@pytest.fixture(scope="module")
def started(
    request: pytest.FixtureRequest,
    batch: Callable[..., Run],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Run]:
    """The module's non-interactive ``python -m runtime`` processes, started together at its
    first test (they are independent), by the name of the test that reads each; only those
    of the selected tests."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "my_tools.py").write_text(MY_TOOLS)
    config = folder / "worker.toml"
    config.write_text(f'[queue]\nbackend = "sqlite"\n[queue.sqlite]\npath = "{folder / "q.db"}"\n')
    tracing = clean_env(RUNTIME_TRACING__ENABLED="true", RUNTIME_TRACING__CONSOLE="true")
    calculate = '/call calculate {"expression": "6 * 7"}'
    commands: dict[str, tuple[list[str], dict[str, str], Path]] = {
        "demo": (["demo", "--delta-delay", "0"], clean_env(), REPO_ROOT),
        "test_run_without_key_uses_the_embedded_emulator": (
            ["run", "hello"],
            clean_env(),
            REPO_ROOT,
        ),
        "test_run_imports_tools_from_a_module": (
            ["run", "--tools", "my_tools", '/call shout {"text": "quiet"}'],
            clean_env(),
            folder,
        ),
        "test_submit_without_assistant_is_one_line": (
            ["submit", "--config", str(config), "hello"],
            clean_env(),
            REPO_ROOT,
        ),
        "test_run_traces_to_the_console_when_configured": (
            ["run", "--builtin-tools", calculate],
            tracing,
            REPO_ROOT,
        ),
    }
    tests = {item.originalname for item in selected(request)}
    wanted = {name for name in commands if name in tests}
    if tests & {
        "test_demo_prints_plain_lines_when_not_a_tty",
        "test_demo_tool_calls_run_in_parallel",
    }:
        wanted.add("demo")
    return {
        name: batch([sys.executable, "-m", "runtime", *args], env=env, cwd=cwd)
        for name, (args, env, cwd) in commands.items()
        if name in wanted
    }


@pytest.fixture(scope="module")
def demo_plain(started: dict[str, Run]) -> subprocess.CompletedProcess[str]:
    """One run of the demo with pipes (no text pacing, to keep the suite fast)."""
    return started["demo"].result()


def test_demo_prints_plain_lines_when_not_a_tty(
    demo_plain: subprocess.CompletedProcess[str],
) -> None:
    """The demo exits 0, runs every demo tool in one round, approves the booking by itself
    (stdin is not a terminal, and it says so), completes all three turns, no ANSI."""
    proc = demo_plain
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b[" not in out
    for name in DEMO_TOOLS:
        assert f"tool.finished name={name} " in out
        assert f"{name} returned: " in out
    assert out.count("outcome=ok") == 6
    assert "calculate returned: 19949.2" in out
    assert out.count("run.finished status=completed") == 3
    assert "run.finished status=completed rounds=1 tool_calls=5" in out
    assert "stdin is not a terminal, so approving automatically" in out
    assert "book_table returned: " in out and '"reference":"BK-' in out
    assert "You said: Thanks, that is all I needed." in out
    assert "total_tokens=" in out
    assert proc.stderr.strip() == ""  # logging stays at WARNING: nothing noisy


def test_demo_tool_calls_run_in_parallel(demo_plain: subprocess.CompletedProcess[str]) -> None:
    """All five calls start before the first one finishes (one concurrent round)."""
    out = demo_plain.stdout
    tool_lines = [line for line in out.splitlines() if line.startswith("tool.")]
    assert [line.split()[0] for line in tool_lines[:5]] == ["tool.started"] * 5


def test_demo_live_view_on_a_tty() -> None:
    """On a terminal the demo draws ANSI tool lines with a running state, then results."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "demo"],
        cwd=REPO_ROOT,
        env=clean_env(COLUMNS="120"),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    screen = b"".join(chunks).decode(errors="replace")
    assert "\x1b[2K" in screen and "\x1b[" in screen  # redrawn in place
    assert "running" in screen
    assert "✓" in screen and "get_weather" in screen
    assert "calculate returned: 19949.2" in screen
    assert screen.count("completed") >= 2
    assert "run.finished" not in screen  # not the plain shape


def test_demo_on_the_responses_protocol(cli: InProcess) -> None:
    """`--protocol responses` plays the same conversation over the Responses API."""
    proc = cli("demo", "--protocol", "responses", "--delta-delay", "0")
    assert proc.returncode == 0, proc.stderr
    assert "protocol responses" in proc.stdout
    assert "run_id=resp_" in proc.stdout
    assert proc.stdout.count("outcome=ok") == 6
    assert "calculate returned: 19949.2" in proc.stdout
    assert "You said: Thanks, that is all I needed." in proc.stdout
    assert proc.stdout.count("run.finished status=completed") == 3


@pytest.mark.parametrize("answer", ["y", "n"])
def test_the_demo_asks_at_a_terminal_whether_to_book(answer: str) -> None:
    """With a terminal on stdin the demo shows a y/n prompt for the booking and waits: "y"
    books the table, "n" sends the model a rejection; the run completes either way."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "demo", "--plain", "--delta-delay", "0"],
        cwd=REPO_ROOT,
        env=clean_env(COLUMNS="120"),
        stdin=slave,
        stdout=slave,
        stderr=subprocess.PIPE,
    )
    os.close(slave)
    screen = b""
    answered = False
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        screen += data
        if not answered and b"? [y/n] " in screen:
            assert b"book_table returned" not in screen  # nothing ran before the answer
            os.write(master, answer.encode() + b"\n")
            answered = True
    os.close(master)
    assert proc.wait(timeout=60) == 0
    text = screen.decode(errors="replace")
    assert "approve book_table(restaurant='Chez Paul', people=2, time='20:00')? [y/n]" in text
    if answer == "y":
        assert "book_table returned: " in text and '"reference":"BK-' in text
    else:
        assert "rejected: the person said no" in text and '"reference"' not in text
    assert text.count("run.finished status=completed") == 3


def test_the_demo_rejects_everything_when_told(cli: InProcess) -> None:
    """`--approvals reject` answers no for the person, without a prompt."""
    proc = cli("demo", "--delta-delay", "0", "--approvals", "reject")
    assert proc.returncode == 0, proc.stderr
    assert "approval: rejected book_table(" in proc.stdout
    assert "rejected: the person said no" in proc.stdout
    assert "tool.started name=book_table" not in proc.stdout


def test_demo_rejects_an_unknown_protocol(cli: InProcess) -> None:
    """A protocol outside assistants/responses is a usage error (exit 2)."""
    proc = cli("demo", "--protocol", "carrier-pigeon")
    assert proc.returncode == 2
    assert "invalid choice" in proc.stderr


def test_run_without_key_uses_the_embedded_emulator(started: dict[str, Run]) -> None:
    """With no key or base URL configured, `run` says it uses the emulator and completes."""
    proc = started["test_run_without_key_uses_the_embedded_emulator"].result()
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "You said: hello"
    assert "embedded emulator" in proc.stderr
    assert "status=completed" in proc.stderr


def test_run_with_builtin_tools_on_the_emulator(cli: InProcess) -> None:
    """`--builtin-tools` offers the calculator; a /call line runs it and the reply quotes it."""
    proc = cli("run", "--builtin-tools", '/call calculate {"expression": "6 * 7"}')
    assert proc.returncode == 0, proc.stderr
    assert "calculate returned: 42" in proc.stdout
    assert "tool.finished name=calculate" in proc.stderr


def test_run_on_the_responses_protocol(cli: InProcess) -> None:
    """`run --protocol responses` needs no assistant and runs tools over the Responses API."""
    proc = cli(
        "run", "--protocol", "responses", "--builtin-tools", '/call calculate {"expression": "2+2"}'
    )
    assert proc.returncode == 0, proc.stderr
    assert "calculate returned: 4" in proc.stdout
    assert "embedded emulator" in proc.stderr
    assert "run_id=resp_" in proc.stderr


def test_run_imports_tools_from_a_module(started: dict[str, Run]) -> None:
    """`--tools MODULE` registers the module's @tool functions (default registry), found in
    the working directory as `python -m` users expect."""
    proc = started["test_run_imports_tools_from_a_module"].result()
    assert proc.returncode == 0, proc.stderr
    assert "shout returned: QUIET" in proc.stdout


def test_run_imports_a_module_registry_from_a_file(
    cli: InProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--tools path.py` uses the module's own `registry` attribute."""
    monkeypatch.delitem(sys.modules, "reg_tools", raising=False)  # removed again afterwards
    path = tmp_path / "reg_tools.py"
    path.write_text(
        "from tools import ToolRegistry\n\n"
        "registry = ToolRegistry()\n\n"
        "@registry.tool\n"
        "async def double(n: int) -> int:\n"
        '    """Double n."""\n'
        "    return 2 * n\n"
    )
    proc = cli("run", "--tools", str(path), '/call double {"n": 21}')
    assert proc.returncode == 0, proc.stderr
    assert "double returned: 42" in proc.stdout


def test_run_reports_a_broken_tools_module(cli: InProcess) -> None:
    """An unimportable tools module is a usage error (exit 2) with a message."""
    proc = cli("run", "--tools", "no_such_module_xyz", "hi")
    assert proc.returncode == 2
    assert "cannot load tools" in proc.stderr


def test_run_against_a_configured_server_requires_an_assistant(cli: InProcess) -> None:
    """With a key and base URL configured, --assistant is mandatory (exit 2)."""
    env = {"OPENAI_API_KEY": "sk-test-0123456789", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}
    proc = cli("run", "hello", env=env)
    assert proc.returncode == 2
    assert "--assistant is required" in proc.stderr
    assert "sk-test-0123456789" not in proc.stderr


async def test_run_uses_the_configured_server(emulator: Emulator, cli: InProcess) -> None:
    """With OPENAI_API_KEY + OPENAI_BASE_URL, `run` talks to that server, not an emulator."""
    async with AssistantsClient(base_url=emulator.base_url, api_key="sk-remote") as client:
        assistant = await client.create_assistant(model="gpt-4o")
    env = {"OPENAI_API_KEY": "sk-remote-0123456789", "OPENAI_BASE_URL": emulator.base_url}
    code, out, err = astuple(
        await asyncio.to_thread(cli, "run", "--assistant", assistant.id, "ping", env=env)
    )
    assert code == 0, err
    assert out.strip() == "You said: ping"
    assert "embedded emulator" not in err
    assert emulator.stats["runs_created"] == 1
    assert "sk-remote-0123456789" not in err


async def test_run_continues_a_thread(emulator: Emulator, cli: InProcess) -> None:
    """`--thread ID` adds the message to that thread and runs on it."""
    async with AssistantsClient(base_url=emulator.base_url, api_key="sk-remote") as client:
        assistant = await client.create_assistant(model="gpt-4o")
        thread = await client.create_thread(messages=[{"role": "user", "content": "first"}])
    env = {"OPENAI_API_KEY": "sk-remote", "OPENAI_BASE_URL": emulator.base_url}
    code, out, err = astuple(
        await asyncio.to_thread(
            cli, "run", "--assistant", assistant.id, "--thread", thread.id, "second", env=env
        )
    )
    assert code == 0, err
    assert out.strip() == "You said: second"
    assert [m["role"] for m in emulator.messages(thread.id)] == ["user", "user", "assistant"]


async def test_run_exits_1_when_the_run_fails(cli: InProcess) -> None:
    """A run that ends failed gives exit code 1 and a status line saying so."""
    async with Emulator(scenario=SCENARIOS / "flaky-model.toml") as emu:
        async with AssistantsClient(base_url=emu.base_url, api_key="sk-remote") as client:
            assistant = await client.create_assistant(model="gpt-4o")
        env = {"OPENAI_API_KEY": "sk-remote", "OPENAI_BASE_URL": emu.base_url}
        code, _out, err = astuple(
            await asyncio.to_thread(cli, "run", "--assistant", assistant.id, "hi", env=env)
        )
    assert code == 1
    assert "status=failed" in err


async def test_ctrl_c_cancels_the_run_on_the_server(emulator: Emulator, tmp_path: Path) -> None:
    """SIGINT while a tool runs: exit 130 and the server's run ends cancelled."""
    (tmp_path / "slow_tools.py").write_text(
        "import asyncio\nfrom tools import tool\n\n"
        "@tool\n"
        "async def slow() -> str:\n"
        '    """Take a minute."""\n'
        "    await asyncio.sleep(60)\n"
        '    return "late"\n'
    )
    async with AssistantsClient(base_url=emulator.base_url, api_key="sk-remote") as client:
        assistant = await client.create_assistant(model="gpt-4o")
    env = clean_env(OPENAI_API_KEY="sk-remote", OPENAI_BASE_URL=emulator.base_url)
    tools_file = str(tmp_path / "slow_tools.py")
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "runtime", "run", "--assistant", assistant.id),
        *("--tools", tools_file, "/call slow {}"),
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # A shell without job control starts background jobs with SIGINT ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert proc.stderr is not None
    seen = b""
    while b"tool.started name=slow" not in seen:
        line = await asyncio.wait_for(proc.stderr.readline(), timeout=30)
        assert line, seen.decode()
        seen += line
    proc.send_signal(signal.SIGINT)
    _out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 130, err.decode()
    after_signal = err.decode().splitlines()
    assert after_signal == ["interrupted"], after_signal  # no raw run.aborting log line
    runs = [r for r in emulator.requests if r["method"] == "POST" and r["path"].endswith("/runs")]
    assert len(runs) == 1
    thread_id = runs[0]["path"].split("/")[3]
    (run,) = emulator.runs(thread_id)
    assert run["status"] == "cancelled"


def test_call_signature_and_one_line_formatting() -> None:
    """Tool calls show as name(key=json) (raw text when not an object); lines are cut with …."""
    assert call_signature("f", '{"city": "Paris", "n": 2}') == 'f(city="Paris", n=2)'
    assert call_signature("f", "not json") == "f(not json)"
    assert call_signature("f", "") == "f()"
    assert one_line("a\n  b\tc", 100) == "a b c"
    assert one_line("abcdef", 4) == "abc…"


def test_usage_fields_reads_neutral_usage() -> None:
    """The neutral usage of either protocol gives prompt/completion/total (total summed when 0)."""
    expected = {"prompt": 3, "completion": 4, "total": 7}
    assert usage_fields(Usage(input_tokens=3, output_tokens=4, total_tokens=7)) == expected
    assert usage_fields(Usage(input_tokens=3, output_tokens=4)) == expected
    assert usage_fields(None) == {}


async def test_live_view_redraws_tool_lines_in_place() -> None:
    """The live view moves the cursor up over its tool block and shows running, then results."""
    out = io.StringIO()
    view = LiveView(out, color=False, tick_s=0.01)
    await view.on_tool_call_started(ToolCall("call_1", "slow", '{"n": 1}'))
    await view.on_tool_call_started(ToolCall("call_2", "fast", "{}"))
    await asyncio.sleep(0.05)  # a few ticks of the elapsed-time redraw
    result = ToolCallResult("call_2", "fast", "{}", output="42", is_error=False, seconds=0.01)
    await view.on_tool_call_finished(result)
    await view.aclose()
    screen = out.getvalue()
    assert "\x1b[1F" in screen and "\x1b[2F" in screen
    assert "slow(n=1)  running" in screen
    assert "✓ fast()  0.01s → 42" in screen
    assert screen.count("\x1b[2F") >= 3  # the ticker redrew while slow was running


async def test_run_continues_a_responses_conversation_by_its_id(
    emulator: Emulator, cli: InProcess
) -> None:
    """`run` on Responses with conversations: the second message continues the first one's
    conversation by id (--thread), like a thread, and the conversation holds both."""
    env = {
        "OPENAI_API_KEY": "sk-remote-0123456789",
        "OPENAI_BASE_URL": emulator.base_url,
        "RUNTIME_PROTOCOL": "responses",
        "RUNTIME_CONVERSATIONS": "true",
    }
    code, _, err = astuple(await asyncio.to_thread(cli, "run", "--plain", "hello", env=env))
    assert code == 0, err
    (line,) = [x for x in err.splitlines() if x.startswith("run.finished")]
    conversation = line.split("thread_id=")[1].split()[0]
    assert conversation.startswith("conv")
    code, _, err = astuple(
        await asyncio.to_thread(cli, "run", "--plain", "--thread", conversation, "again", env=env)
    )
    assert code == 0, err
    assert f"thread_id={conversation}" in err


def test_submit_without_assistant_is_one_line(started: dict[str, Run]) -> None:
    """`submit` without --assistant: exit 2 and one line naming the flag (no pydantic dump)."""
    proc = started["test_submit_without_assistant_is_one_line"].result()
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --assistant ID is required (protocol = assistants)"
    ]


def test_submit_bad_field_is_one_line_without_docs_link(cli: InProcess, tmp_path: Path) -> None:
    """A job rejected by validation is reported as one line, without pydantic's URL."""
    config = tmp_path / "worker.toml"
    config.write_text(
        f'[queue]\nbackend = "sqlite"\n[queue.sqlite]\npath = "{tmp_path / "q.db"}"\n'
    )
    proc = cli("submit", "--config", str(config), "--assistant", "asst_1")  # no message
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "pydantic" not in proc.stderr and "http" not in proc.stderr


@pytest.mark.parametrize("spec", ["nosuch.py", "nosuch_tools_module"])
def test_missing_tools_file_is_named(cli: InProcess, spec: str) -> None:
    """`--tools` naming a file or module that does not exist: exit 2, one line naming it."""
    proc = cli("run", "--tools", spec, "hello")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and spec in lines[0], lines


async def test_live_view_marks_unfinished_tool_lines_stopped() -> None:
    """Closing the live view while a call runs (Ctrl-C) redraws its line as stopped."""
    out = io.StringIO()
    view = LiveView(out, color=False, tick_s=0.01)
    await view.on_tool_call_started(ToolCall(id="c1", name="slow", arguments="{}"))
    await asyncio.sleep(0.03)
    await view.aclose()
    last = out.getvalue().rsplit("\x1b[2K", 1)[-1]
    assert "stopped after" in last and "running" not in last


def test_run_traces_to_the_console_when_configured(started: dict[str, Run]) -> None:
    """`[tracing] enabled` and `console` (here from the environment) make `run` write its
    spans to stderr as JSON lines: the run, its requests and its tool call, one trace."""
    proc = started["test_run_traces_to_the_console_when_configured"].result()
    assert proc.returncode == 0, proc.stderr
    spans = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith('{"name"')]
    names = sorted(s["name"].split(" ")[0] for s in spans)
    assert names == ["chat", "chat", "execute_tool", "invoke_agent"], proc.stderr
    assert len({s["context"]["trace_id"] for s in spans}) == 1
