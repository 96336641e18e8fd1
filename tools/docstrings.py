"""Docstring parsing: a description and per-parameter text (Google, NumPy, Sphinx styles)."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

_SECTION_NAMES = (
    "args|arguments|parameters|params|keyword args|keyword arguments|other parameters|"
    "returns?|yields?|raises|exceptions|examples?|notes?|attributes|see also|warnings?|"
    "todo|references|methods"
)
_PARAM_SECTIONS = {
    "args",
    "arguments",
    "parameters",
    "params",
    "keyword args",
    "keyword arguments",
    "other parameters",
}
_GOOGLE_HEADER = re.compile(rf"^\s*({_SECTION_NAMES})\s*:\s*$", re.IGNORECASE)
_NUMPY_HEADER = re.compile(rf"^\s*({_SECTION_NAMES})\s*$", re.IGNORECASE)
_NUMPY_RULE = re.compile(r"^\s*-{3,}\s*$")
_SPHINX_FIELD = re.compile(r"^\s*:(\w+)([^:]*):\s*(.*)$")
_SPHINX_PARAM_KINDS = {"param", "parameter", "arg", "argument", "key", "keyword"}
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\(([^)]*)\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^\*{0,2}([\w, *]+?)\s*(?::\s*(.*))?$")


@dataclass(frozen=True)
class ParsedDocstring:
    """What a tool needs from a docstring.

    Attributes:
        description: the text before the first section, paragraphs kept, lines joined.
        params: parameter name -> description.
    """

    description: str = ""
    params: dict[str, str] = field(default_factory=dict)


def parse_docstring(doc: str | None) -> ParsedDocstring:
    """Parse a docstring written in Google, NumPy or Sphinx style.

    Args:
        doc: the raw docstring (``fn.__doc__``), or None.

    Returns:
        The description (summary and extended text) and the parameter descriptions.
    """
    if not doc or not doc.strip():
        return ParsedDocstring()
    lines = inspect.cleandoc(doc).splitlines()
    start = _first_section(lines)
    params: dict[str, str] = {}
    _google_params(lines[start:], params)
    _numpy_params(lines[start:], params)
    _sphinx_params(lines[start:], params)
    return ParsedDocstring(description=_join_paragraphs(lines[:start]), params=params)


def _first_section(lines: list[str]) -> int:
    for i, line in enumerate(lines):
        if _GOOGLE_HEADER.match(line) or _SPHINX_FIELD.match(line):
            return i
        if _NUMPY_HEADER.match(line) and i + 1 < len(lines) and _NUMPY_RULE.match(lines[i + 1]):
            return i
    return len(lines)


def _join_paragraphs(lines: list[str]) -> str:
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    return "\n\n".join(paragraphs)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _section_blocks(lines: list[str], numpy: bool) -> list[list[str]]:
    """Return the body lines of each parameter section of one style."""
    blocks: list[list[str]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        header = _NUMPY_HEADER.match(line) if numpy else _GOOGLE_HEADER.match(line)
        if numpy and header and not (i + 1 < len(lines) and _NUMPY_RULE.match(lines[i + 1])):
            header = None
        if header is None:
            i += 1
            continue
        is_param = header.group(1).lower() in _PARAM_SECTIONS
        i += 2 if numpy else 1
        body: list[str] = []
        while i < len(lines) and not _ends_section(lines, i, _indent(line), numpy):
            body.append(lines[i])
            i += 1
        if is_param:
            blocks.append(body)
    return blocks


def _ends_section(lines: list[str], i: int, header_indent: int, numpy: bool) -> bool:
    line = lines[i]
    if _GOOGLE_HEADER.match(line) or _SPHINX_FIELD.match(line):
        return True
    if _NUMPY_HEADER.match(line) and i + 1 < len(lines) and _NUMPY_RULE.match(lines[i + 1]):
        return True
    # Google sections end at the first non-blank line back at the header's indentation.
    return not numpy and bool(line.strip()) and _indent(line) <= header_indent


def _entries(body: list[str]) -> list[tuple[str, list[str]]]:
    """Split a section body into (entry line, continuation lines) at the entries' indent."""
    stripped = [line for line in body if line.strip()]
    if not stripped:
        return []
    base = min(_indent(line) for line in stripped)
    entries: list[tuple[str, list[str]]] = []
    for line in body:
        if not line.strip():
            if entries:
                entries[-1][1].append("")
            continue
        if _indent(line) == base:
            entries.append((line.strip(), []))
        elif entries:
            entries[-1][1].append(line.strip())
    return entries


def _google_params(lines: list[str], params: dict[str, str]) -> None:
    for body in _section_blocks(lines, numpy=False):
        for head, more in _entries(body):
            match = _GOOGLE_ENTRY.match(head)
            if match:
                params[match.group(1)] = _join_paragraphs([match.group(3), *more])


def _numpy_params(lines: list[str], params: dict[str, str]) -> None:
    for body in _section_blocks(lines, numpy=True):
        for head, more in _entries(body):
            match = _NUMPY_ENTRY.match(head)
            if not match:
                continue
            text = _join_paragraphs(more)
            for name in match.group(1).split(","):
                name = name.strip().lstrip("*")
                if name.isidentifier():
                    params[name] = text


def _sphinx_params(lines: list[str], params: dict[str, str]) -> None:
    i = 0
    while i < len(lines):
        match = _SPHINX_FIELD.match(lines[i])
        i += 1
        if not match:
            continue
        more: list[str] = []
        while i < len(lines) and lines[i].strip() and not _SPHINX_FIELD.match(lines[i]):
            more.append(lines[i].strip())
            i += 1
        words = match.group(2).split()
        if match.group(1).lower() in _SPHINX_PARAM_KINDS and words:
            params[words[-1].lstrip("*")] = _join_paragraphs([match.group(3), *more])
