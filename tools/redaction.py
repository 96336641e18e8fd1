"""Default masking of credentials in error outputs (the dispatcher's ``redact``).

Tools must work without the runtime, so this is a small pattern list of common key shapes;
callers with better knowledge (registered secrets) pass their own ``redact``. What is
replaced by ``***``:

* ``sk-...`` keys and ``Bearer <token>``;
* ``api-key: v`` / ``api_key=v`` / ``"password": "v"`` / ``Authorization: v``-style pairs
  (``max_tokens=5`` is not a secret);
* the password of ``scheme://user:password@host`` URLs.
"""

from __future__ import annotations

import re

MASK = "***"

_SECRET_NAMES = (
    r"api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|secret(?:[_-]?key)?"
    r"|password|passwd|token|authorization"
)

# Error paths only, so plain case-insensitive patterns; group 1 is kept, the rest masked.
_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\b()sk-[A-Za-z0-9_-]{8,}"),
    re.compile(r"(?i)\b(bearer\s+)(?!\*\*\*)\S+"),
    re.compile(
        rf"""(?xi)
        ((?:{_SECRET_NAMES})["']?\s*[:=]\s*["']?)
        (?!\*\*\*|bearer\b)[^\s"',;&}}\])]+
        """
    ),
    re.compile(r"(://[^/\s:@]+:)[^/\s@]+(?=@)"),
)


def mask_secrets(text: str) -> str:
    """Return text with values shaped like credentials replaced by ``***``.

    Example:
        >>> mask_secrets("401 for api-key: 0123abcd, Bearer sk-live-123456789")
        '401 for api-key: ***, Bearer ***'
    """
    for pattern in _PATTERNS:
        text = pattern.sub(_keep_name, text)
    return text


def _keep_name(match: re.Match[str]) -> str:
    return match.group(1) + MASK
