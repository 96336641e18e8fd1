"""Every script in examples/ runs as a subprocess against the embedded emulator and says so."""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Run, selected

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples"

# script -> (arguments, substrings its output must contain)
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "quickstart.py": ([], ["completed | get_weather returned: sunny, 21 C in Paris"]),
    "streaming_handler.py": (
        [],
        [
            "[model wants] get_weather",
            "[tool ok] calculate in",
            "-> 51",
            "[assistant] get_weather returned: light rain, 12 C in Oslo",
            "[done] completed, 1 round(s)",
        ],
    ),
    "web_chat.py": (
        ["--self-test"],
        [
            "tool_started",
            "tool_finished",
            "done",
            "stream: a tool_started event arrived",
            "hang-up: the server run",
            "ended cancelled",
            "self-test passed",
        ],
    ),
    "mcp_maths.py": (
        [],
        [
            "tools: negate, maths__add, maths__multiply",
            "maths__add -> 5",
            "maths__multiply -> 42",
            "negate -> -5",
            "completed",
        ],
    ),
    "cancellation.py": (
        [],
        [
            "1. task cancelled while slow_report was running",
            "2. asyncio.timeout(0.5) expired around the run",
            "3. flaky_lookup: error_type=timeout",
            "did not finish within its timeout of 0.5 s",
            "run completed; the model read: flaky_lookup returned:",
        ],
    ),
    "tracing.py": (
        [],
        [
            '"name": "execute_tool book_table"',  # the console exporter's JSON
            "completed | It is sunny in Paris; I could not book a table.",
            "invoke_agent gpt-4o",
            "    chat gpt-4o",
            "kind=create finish=tool_calls",
            "events=runtime.retry",
            "events=runtime.stream_lost",
            "    execute_tool book_table ERROR",
            "error.type=tool_exception",
            "kind=submit finish=stop",
        ],
    ),
    "azure.py": (
        [],
        [
            "/openai (api-version=2024-08-01-preview)",
            "POST /openai/threads",
            "/submit_tool_outputs",
            "completed | calculate returned: 1024",
        ],
    ),
}


@pytest.fixture(scope="module")
def example_runs(request: pytest.FixtureRequest, batch: Callable[..., Run]) -> dict[str, Run]:
    """Every selected example started at once (they are independent processes), in test
    order; each test reads its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_OPENAI"))}
    return {
        name: batch(
            [sys.executable, str(EXAMPLES / name), *EXPECTED[name][0]], cwd=REPO_ROOT, env=env
        )
        for name in sorted(
            {
                t.callspec.params["name"]
                for t in selected(request)
                if t.originalname == "test_example_runs"
            }
        )
    }


def test_every_example_is_covered_and_documented() -> None:
    """Each examples/*.py has a test entry here and a module docstring saying what it shows."""
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(EXPECTED)
    for name in scripts:
        doc = ast.get_docstring(ast.parse((EXAMPLES / name).read_text()))
        assert doc and len(doc) > 40, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name: str, example_runs: dict[str, Run]) -> None:
    """The example exits 0 and prints what it demonstrates."""
    _args, expected = EXPECTED[name]
    proc = example_runs[name].result()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for text in expected:
        assert text in proc.stdout, f"{text!r} missing from:\n{proc.stdout}"
    if name == "cancellation.py":  # both runs end cancelled on the server, not just locally
        server_lines = [line for line in proc.stdout.splitlines() if "server run" in line]
        assert len(server_lines) == 2
        assert all(line.endswith(": cancelled") for line in server_lines)


def test_quickstart_is_short() -> None:
    """The quickstart stays about 20 lines of code (docstring and blank lines not counted)."""
    source = (EXAMPLES / "quickstart.py").read_text()
    tree = ast.parse(source)
    doc_end = tree.body[0].end_lineno or 0
    code = [
        line for line in source.splitlines()[doc_end:] if line.strip() and not line.startswith("#")
    ]
    assert len(code) <= 26
