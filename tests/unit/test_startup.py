"""Start-up stays light: ``--help`` and ``import runtime`` load no client or worker code,
and a foreign ``tools`` package is refused with a clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("aiohttp", "pydantic", "structlog", "runtime.assistants", "runtime.worker", "tools")


def _imported(*argv: str, cwd: Path = REPO_ROOT) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}


def test_help_imports_no_heavy_modules() -> None:
    """`python -m runtime --help` imports neither aiohttp/pydantic nor our clients or tools."""
    modules = _imported("-m", "runtime", "--help")
    assert "runtime" in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)}


def test_public_names_load_on_first_use() -> None:
    """`import runtime` is light; `runtime.Orchestrator` then loads the Assistants client."""
    light = _imported("-c", "import runtime")
    assert "runtime.assistants.orchestrator" not in light and "aiohttp" not in light
    used = _imported("-c", "import runtime; runtime.Orchestrator")
    assert "runtime.assistants.orchestrator" in used


def test_shadowing_tools_package_is_named(tmp_path: Path) -> None:
    """A `tools/__init__.py` in the cwd: `import runtime` fails naming both paths and a fix."""
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "__init__.py").write_text("# the user's own tools\n")
    proc = subprocess.run(
        [sys.executable, "-m", "runtime", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: another 'tools' package shadows")
    assert str(tmp_path / "tools" / "__init__.py") in last
    assert str(REPO_ROOT / "tools" / "__init__.py") in last
    assert "Rename your folder" in last


def test_own_tools_package_passes_the_check(tmp_path: Path) -> None:
    """Importing `tools` first (ours) and then `runtime` works from any directory."""
    proc = subprocess.run(
        [sys.executable, "-c", "import tools, runtime; print(runtime.RunPolicy.__name__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "RunPolicy"
