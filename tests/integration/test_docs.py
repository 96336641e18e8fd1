"""Every fenced code block of the Markdown docs runs or is checked.

``python`` blocks run as scripts in a subprocess (on the embedded emulator, no key); a block
whose first line names a test file (``# test_x.py: ...``) runs under pytest, with the installed
plugin's fixtures; ``bash`` blocks: the demo and every ``python -m runtime run`` line run (on
the embedded emulator), every ``python -m runtime CMD`` line's ``CMD --help`` exits 0,
every script or module a line starts exists and defines the options the line uses, every ``pip install``
names an extra ``pyproject.toml`` defines; ``toml`` blocks parse and name only settings the
runtime or the worker knows; ``text`` blocks are drawings and outputs, and every
``runtime/...`` or ``tools/...`` path a drawing names exists. The README's worker recipe runs
as three processes in ``tests/integration/worker/test_worker_emulator_recipe.py``.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from runtime.config import Settings
from runtime.worker.settings import WorkerSettings

from .conftest import Run, selected

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "tests" / "README.md"]
KNOWN_LANGUAGES = {"python", "bash", "toml", "text", "json"}
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def _blocks() -> list[tuple[str, int, str, str]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in _FENCE.finditer(text):
            line = text[: match.start()].count("\n") + 1
            found.append((doc.relative_to(ROOT).as_posix(), line, match[1], match[2]))
    return found


BLOCKS = _blocks()


def _ids(lang: str) -> list[tuple[str, str]]:
    return [(f"{doc}:{line}", code) for doc, line, kind, code in BLOCKS if kind == lang]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    env.pop("RUNTIME_CONFIG", None)
    env["PYTHONPATH"] = str(ROOT)
    # `python` in a doc's command is this interpreter (the one with the package installed).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def test_every_block_has_a_known_language() -> None:
    """No untagged fence: each block is one of the kinds this module checks."""
    assert len(BLOCKS) >= 20
    bad = [(doc, line, kind) for doc, line, kind, _ in BLOCKS if kind not in KNOWN_LANGUAGES]
    assert bad == []


_TEST_FILE = re.compile(r"#\s*(test_\w+\.py)\b")


def _python_argv(code: str, tmp: Path) -> list[str]:
    """The command that runs a ```python block, written to a file under ``tmp``."""
    test_file = _TEST_FILE.match(code)
    script = tmp / (test_file[1] if test_file else "block.py")
    script.write_text(code)
    # A test file runs under pytest as its first line says; -p no:cacheprovider keeps tmp clean.
    pytest_args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"]
    return [sys.executable, *(pytest_args if test_file else []), str(script)]


@pytest.fixture(scope="module")
def started(
    request: pytest.FixtureRequest,
    batch: Callable[..., Run],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, list[Run]]:
    """The docs' processes (python blocks, run lines, the demo line), started together at the
    first test that reads them: they are independent. Only those of the selected tests."""
    tests = {item.originalname for item in selected(request)}
    runs: dict[str, list[Run]] = {}
    if "test_every_python_block_runs" in tests:
        folder = tmp_path_factory.mktemp("blocks")
        runs["python"] = []
        for index, (_, code) in enumerate(_ids("python")):
            block_dir = folder / str(index)
            block_dir.mkdir()
            runs["python"].append(batch(_python_argv(code, block_dir), env=_env(), cwd=block_dir))
    if "test_every_run_line_runs" in tests:
        runs["run"] = [
            batch(_words_after_env(words), env=_env(), cwd=ROOT) for _, words in _run_lines()
        ]
    if "test_the_demo_line_runs" in tests:
        demo = [sys.executable, "-m", "runtime", "demo", "--plain"]
        runs["demo"] = [batch(demo, env=_env(), cwd=ROOT)]
    return runs


def test_every_python_block_runs(started: dict[str, list[Run]]) -> None:
    """Each ```python block runs to exit 0 on the embedded emulator (blocks run in parallel)."""
    blocks = _ids("python")
    assert len(blocks) >= 6
    done = [run.result() for run in started["python"]]
    failed = [
        f"{where}: {run.stdout[-1000:]}{run.stderr[-2000:]}"
        for (where, _), run in zip(blocks, done, strict=True)
        if run.returncode != 0
    ]
    assert failed == []
    tests_ran = [
        run.stdout for (_, code), run in zip(blocks, done, strict=True) if _TEST_FILE.match(code)
    ]
    assert tests_ran and all(re.search(r"\b[1-9]\d* passed", out) for out in tests_ran)


def _bash_lines() -> list[tuple[str, list[str]]]:
    lines = []
    for where, code in _ids("bash"):
        joined = code.replace("\\\n", " ")
        for raw in joined.splitlines():
            line = raw.split(" #")[0].strip()
            line = re.sub(r"^[A-Z_]+=\$\((.*)\)$", r"\1", line)  # VAR=$(command)
            if line and not line.startswith("#"):
                for part in line.split("&&"):
                    lines.append((where, shlex.split(part.strip())))
    return lines


def _words_after_env(words: list[str]) -> list[str]:
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        words = words[1:]
    return words


def _extras() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project.get("optional-dependencies", {}))


# Every command's --help in one interpreter: its exit code, or the error that ended it.
_HELP_ALL = """
import contextlib, io, json, sys
from runtime.__main__ import main
codes = {}
for command in sys.argv[1:]:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            codes[command] = main([*command.split(), "--help"])
    except SystemExit as exc:
        codes[command] = exc.code if out.getvalue().startswith("usage:") else repr(exc)
    except BaseException as exc:
        codes[command] = repr(exc)
print(json.dumps(codes))
"""


def _help_codes(commands: list[str]) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _HELP_ALL, *commands],
        capture_output=True,
        text=True,
        timeout=60,
        env=_env(),
        cwd=ROOT,
        check=True,
    )
    return dict(json.loads(done.stdout))


def _check_script(path: Path, args: list[str], where: str) -> None:
    # Scripts (benchmarks, the chaos driver) are not run: they exist and define every option.
    assert path.is_file(), (where, path)
    source = path.read_text()
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert f'"{option}"' in source, (where, path.name, option)


def test_every_bash_line_names_a_real_command() -> None:
    """Each bash line: runtime commands answer --help, scripts define their options, extras exist."""
    commands: set[tuple[str, ...]] = set()
    unknown = []
    for where, words in _bash_lines():
        words = _words_after_env(words)
        if words[:2] == ["pip", "install"]:
            for extra in re.findall(r"\[([\w,]+)\]", " ".join(words)):
                assert set(extra.split(",")) <= _extras(), (where, words)
        elif words[:3] == ["python", "-m", "runtime"]:
            commands.add(("-m", "runtime", *words[3:4]))
        elif words[:3] == ["python", "-m", "pytest"]:
            paths = [w for w in words[3:] if not w.startswith("-")]
            assert all((ROOT / p.split("::")[0]).exists() for p in paths), (where, words)
        elif words[:2] == ["python", "-m"]:
            _check_script(ROOT / (words[2].replace(".", "/") + ".py"), words[3:], where)
        elif words[0] == "python" and words[1].endswith(".py"):
            _check_script(ROOT / words[1], words[2:], where)
        elif words[0] in {"bash", ".ci/redis.sh"} or words[0].startswith(".ci/"):
            script = words[1] if words[0] == "bash" else words[0]
            assert (ROOT / script).is_file(), (where, words)
        elif words[0] == "export":
            continue
        else:
            unknown.append((where, words))
    assert unknown == []
    assert ("-m", "runtime", "demo") in commands
    codes = _help_codes([" ".join(c[2:]) for c in sorted(commands)])
    assert codes and {c: code for c, code in codes.items() if code != 0} == {}


def _run_lines() -> list[tuple[str, list[str]]]:
    return [
        (where, words)
        for where, words in _bash_lines()
        if _words_after_env(words)[:4] == ["python", "-m", "runtime", "run"]
    ]


def test_every_run_line_runs(started: dict[str, list[Run]]) -> None:
    """Each ``python -m runtime run`` line of the docs completes on the embedded emulator
    (lines run in parallel)."""
    lines = _run_lines()
    assert lines
    done = [run.result() for run in started["run"]]
    for (where, _), result in zip(lines, done, strict=True):
        assert result.returncode == 0, (where, result.stderr[-2000:])
        assert "run.finished status=completed" in result.stderr + result.stdout, where


def test_the_demo_line_runs(started: dict[str, list[Run]]) -> None:
    """The README's demo command (minus its install step) completes and exits 0."""
    (demo,) = started["demo"]
    done = demo.result()
    assert done.returncode == 0, done.stderr
    assert "run.finished status=completed" in done.stdout


def _check_keys(model: type[BaseModel], data: dict[str, Any], where: str) -> None:
    for key, value in data.items():
        assert key in model.model_fields, f"{where}: unknown setting {key!r}"
        annotation = model.model_fields[key].annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if isinstance(value, dict) and nested:
            _check_keys(annotation, value, f"{where}.{key}")  # type: ignore[arg-type]


@pytest.mark.parametrize(("where", "code"), _ids("toml"))
def test_every_toml_block_parses_and_names_real_settings(
    where: str, code: str, tmp_path: Path
) -> None:
    """Each ```toml block parses, and its keys are runtime, worker or scenario settings."""
    data = tomllib.loads(code)
    assert data
    if "turns" in data:
        from runtime.emulator.scenario import Scenario

        # Under tmp_path: two blocks checked at once (one per test worker) cannot share a file.
        path = tmp_path / "scenario.toml"
        path.write_text(code)
        assert Scenario.load(path).turns
        return
    model: type[BaseModel] = WorkerSettings if "worker" in data or "queue" in data else Settings
    _check_keys(model, data, where)


def test_drawings_name_only_real_paths() -> None:
    """Every module and folder the ``text`` drawings name exists under runtime/ or tools/."""
    tree = [
        p.relative_to(ROOT).as_posix() for d in ("runtime", "tools") for p in (ROOT / d).rglob("*")
    ]
    names = {Path(p).name for p in tree} | {"runtime", "tools"}
    missing = []
    for where, code in _ids("text"):
        for module in re.findall(r"\b([a-z_]+\.py)\b", code):
            if module not in names:
                missing.append((where, module))
        for folder in re.findall(r"^\s*([a-z_]+)/", code, re.M):
            if folder not in names:
                missing.append((where, folder))
    assert missing == []


def test_every_module_the_docs_send_to_pydoc_imports() -> None:
    """Each module named after ``pydoc`` in the docs exists, and has a docstring."""
    names: set[str] = set()
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            if "pydoc" in line:
                names |= set(re.findall(r"`(?:python -m pydoc )?((?:runtime|tools)[\w.]*)`", line))
                names |= set(re.findall(r"pydoc ((?:runtime|tools)[\w.]*)", line))
    assert {"runtime.core.policy", "runtime.emulator", "runtime.worker", "tools"} <= names
    for name in sorted(names):
        module = importlib.import_module(name)
        assert module.__doc__, name
