"""Tools for ``python -m runtime run``: modules or ``.py`` files gathered into one registry."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from tools import ToolRegistry, default_registry


def _import_tools_module(spec: str) -> ModuleType:
    """Import ``package.module`` or a ``path/to/file.py``."""
    if spec.endswith(".py") or os.sep in spec:
        path = Path(spec).expanduser().resolve()
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load tools from {spec}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `python -m` users expect their cwd modules
    return importlib.import_module(spec)


def load_tool_registry(modules: Sequence[str], *, builtins: bool = False) -> ToolRegistry:
    """Import tool modules and gather their tools into one registry.

    A module contributes its ``registry`` attribute when it is a :class:`ToolRegistry`,
    else whatever its ``@tool`` functions registered on :data:`tools.default_registry`.

    Args:
        modules: module names (``myapp.tools``) or ``.py`` paths.
        builtins: add the builtin clock and calculator.

    Returns:
        A new registry (a name registered twice keeps its first tool).
    """
    sources: list[ToolRegistry] = []
    for spec in modules:
        module = _import_tools_module(spec)
        own = getattr(module, "registry", None)
        sources.append(own if isinstance(own, ToolRegistry) else default_registry)
    combined = ToolRegistry()
    if builtins:
        from tools.builtin import register_builtins

        register_builtins(combined)
    for source in sources:
        for item in source:
            if item.name not in combined:
                combined.add(item)
    return combined
