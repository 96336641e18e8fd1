"""The README's quickstart runs as written, and its two commands are the ones CI runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from runtime.config import load_settings
from runtime.emulator.scenario import Scenario
from runtime.worker.settings import load_worker_settings

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


# Paths the README names: a repository-relative file or folder, or a glob of them.
_PATH = re.compile(
    r"(?<![\w./-])((?:config|examples|tests|runtime|tools|\.ci)/[\w.*/-]*[\w*]|requirements-dev\.lock)"
)


def _named_paths() -> set[str]:
    return set(_PATH.findall(README.read_text()))


def test_readme_names_only_files_the_repository_ships() -> None:
    """Every path the README names exists in the repository; none points outside it."""
    text = README.read_text()
    outside = re.findall(r"(?<![.\w])\.\./[\w./-]+", text)
    assert outside == [], "the README points outside the repository"
    root = README.parent
    named = _named_paths()
    assert "requirements-dev.lock" in named and "config/worker.toml" in named
    missing = sorted(p for p in named if not any(root.glob(p.rstrip("/"))))
    assert missing == []


def test_every_config_file_the_readme_names_loads() -> None:
    """Each config/*.toml the README names (globs expanded) loads with its own loader."""
    root = README.parent
    files = sorted(
        {f for p in _named_paths() if p.startswith("config/") for f in root.glob(p) if f.is_file()}
    )
    names = {f.relative_to(root).as_posix() for f in files}
    assert {"config/runtime.toml", "config/worker.toml"} <= names
    assert any(n.startswith("config/scenarios/") for n in names)
    for path in files:
        if path.name == "runtime.toml":
            assert load_settings(path).policy.max_tool_rounds >= 1
        elif path.name == "worker.toml":
            assert load_worker_settings(path).worker.concurrency >= 1
        else:
            assert Scenario.load(path).turns, path
