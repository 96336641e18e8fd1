"""The README's quickstart runs as written, and its two commands are the ones CI runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
CI = Path(__file__).resolve().parents[2] / ".ci" / "run"


def _python_block(section: str) -> str:
    text = README.read_text()
    block = text[text.index(section) :]
    block = block[block.index("```python") + len("```python") :]
    return block[: block.index("```")]


def test_quickstart_runs_and_prints_the_tool_output(tmp_path: Path) -> None:
    """The quickstart code completes a tool round on the embedded emulator."""
    script = tmp_path / "quickstart.py"
    script.write_text(_python_block("## Quickstart"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "completed get_weather returned: Paris: 21c ['Paris: 21c']" in done.stdout


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    """.ci/run ends with exactly the test line the README gives."""
    text = README.read_text()
    section = text[text.index("## The two commands") : text.index("## Quickstart")]
    bash_blocks = [b.split("```")[0].strip() for b in section.split("```bash")[1:]]
    assert bash_blocks[0] == "pip install -e . && python -m runtime demo"
    test_line = bash_blocks[1]
    assert test_line in CI.read_text().splitlines()
