"""Refuse to start when another top-level ``tools`` package hides ours.

``tools`` is a common folder name: a project's own ``tools/__init__.py`` in the current
directory (first on ``sys.path`` under ``python -m``) would otherwise be imported instead and
fail later with a confusing ImportError.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

#: Where our ``tools`` package lives: beside ``runtime`` (source tree and installs alike).
EXPECTED = Path(__file__).resolve().parent.parent / "tools" / "__init__.py"


def check_tools_package() -> None:
    """Raise ImportError naming both paths when ``import tools`` would not be ours."""
    loaded = sys.modules.get("tools")
    if loaded is not None:
        found = getattr(loaded, "__file__", None)
    else:
        spec = importlib.util.find_spec("tools")  # finds without executing anything
        found = None if spec is None else spec.origin
    if found is None or Path(found).resolve() == EXPECTED:
        return  # a missing or namespace `tools` is left to the normal import error
    raise ImportError(
        f"another 'tools' package shadows agent-runtime's: {found} is imported instead of "
        f"{EXPECTED}. Rename your folder (e.g. to 'my_tools'), or run from a directory that "
        "does not contain it, or remove its directory from sys.path / PYTHONPATH."
    )
