"""Static checks over the source: no eval/exec anywhere, loopback defaults in the shipped config."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("runtime", "tools", "examples")
# Builtins that run code from strings; ``compile`` only as the bare builtin (re.compile is fine).
FORBIDDEN = frozenset({"eval", "exec", "compile", "__import__"})
FORBIDDEN_MODULES = frozenset({"pickle", "marshal", "shelve"})


def python_files() -> list[Path]:
    """Every .py file of the scanned packages."""
    files = [p for top in SCANNED for p in sorted((REPO_ROOT / top).rglob("*.py"))]
    assert len(files) > 20, "the scan found suspiciously few files"
    return files


def code_execution_sites(tree: ast.AST) -> list[str]:
    """Where a module calls or references eval/exec/compile/__import__ as builtins."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in FORBIDDEN:
            found.append(f"line {node.lineno}: {node.id}")
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in FORBIDDEN
            and isinstance(node.value, ast.Name)
            and node.value.id in {"builtins", "__builtins__"}
        ):
            found.append(f"line {node.lineno}: builtins.{node.attr}")
        elif isinstance(node, ast.Call) and _is_getattr_of_builtin(node):
            found.append(f"line {node.lineno}: getattr(builtins, ...)")
    return found


def _is_getattr_of_builtin(node: ast.Call) -> bool:
    func = node.func
    if not (isinstance(func, ast.Name) and func.id == "getattr" and len(node.args) >= 2):
        return False
    target, name = node.args[0], node.args[1]
    return (
        isinstance(target, ast.Name)
        and target.id in {"builtins", "__builtins__"}
        and isinstance(name, ast.Constant)
        and name.value in FORBIDDEN
    )


def unsafe_imports(tree: ast.AST) -> list[str]:
    """Imports of modules that deserialize code (pickle & co.)."""
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found += [
            f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in FORBIDDEN_MODULES
        ]
    return found


def test_no_eval_or_exec() -> None:
    """No module of runtime/, tools/ or examples/ runs code from strings or unpickles data."""
    offenders = {}
    for path in python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        sites = code_execution_sites(tree) + unsafe_imports(tree)
        if sites:
            offenders[str(path.relative_to(REPO_ROOT))] = sites
    assert offenders == {}


def test_the_scanner_finds_what_it_looks_for() -> None:
    """The AST scan flags eval, exec, builtins.eval, getattr(builtins, 'exec') and pickle."""
    source = (
        "import builtins, pickle\n"
        "eval('1')\n"
        "exec('x = 1')\n"
        "builtins.eval('2')\n"
        "getattr(builtins, 'exec')('y = 2')\n"
        "f = compile\n"
        "import re; re.compile('x')\n"
    )
    tree = ast.parse(source)
    assert len(code_execution_sites(tree)) == 5
    assert unsafe_imports(tree) == ["line 1: import pickle"]


def test_shipped_config_binds_loopback() -> None:
    """config/worker.toml serves health/metrics on loopback and talks to a loopback emulator."""
    config = tomllib.loads((REPO_ROOT / "config" / "worker.toml").read_text())
    assert config["http"]["host"] in {"127.0.0.1", "::1", "localhost"}
    base_url = config.get("api", {}).get("base_url", "")
    assert not base_url or base_url.startswith(("http://127.0.0.1", "http://localhost", "https://"))
