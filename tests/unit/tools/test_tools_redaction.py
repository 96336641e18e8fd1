"""Error outputs never carry credentials, even when the caller passes no ``redact``."""

from __future__ import annotations

import json

import pytest

from tools import ToolCall, ToolDispatcher, ToolRegistry
from tools.redaction import mask_secrets

registry = ToolRegistry()

SECRETS = ("sk-live-0123456789abcdef", "0123456789abcdef0123456789abcdef", "hunter2pass")


@registry.tool
async def leaky() -> str:
    """Fail with an exception whose text quotes credentials."""
    raise RuntimeError(
        f"upstream 401: Authorization: Bearer {SECRETS[0]}; "
        f"headers={{'api-key': '{SECRETS[1]}'}}; url=https://bob:{SECRETS[2]}@db.local/x"
    )


@pytest.mark.parametrize("redact", [None, str.strip])
async def test_error_outputs_are_masked_without_a_redact_argument(redact: object) -> None:
    """With no redact (the default) or a redact that misses them, key shapes in exception
    text are masked in the error output."""
    dispatcher = (
        ToolDispatcher(registry) if redact is None else ToolDispatcher(registry, redact=redact)  # type: ignore[arg-type]
    )
    (result,) = await dispatcher.run_batch([ToolCall("c1", "leaky", "{}")])
    assert result.error_type == "tool_exception"
    for secret in SECRETS:
        assert secret not in result.output
    message = json.loads(result.output)["error"]["message"]
    assert "Bearer ***" in message and "'api-key': '***'" in message and "bob:***@" in message


def test_mask_secrets_leaves_ordinary_text() -> None:
    """Names that merely contain a secret word (max_tokens) and plain text stay as they are."""
    text = "max_tokens=5, tokens: 12, the key point, sk-short"
    assert mask_secrets(text) == text
    assert mask_secrets("TOKEN=abc.def") == "TOKEN=***"
