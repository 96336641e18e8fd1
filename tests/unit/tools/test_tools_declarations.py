"""Tool declarations: needs_approval, effects and unknown_outcome."""

from __future__ import annotations

from typing import Any

import pytest

from tools import ToolContext, ToolRegistrationError, ToolRegistry


def test_declarations_default_to_a_read_without_approval() -> None:
    """An undeclared tool reads, needs no approval and reports unknown outcomes."""
    registry = ToolRegistry()

    @registry.tool
    def look(x: int) -> int:
        """Look."""
        return x

    tool = registry.get("look")
    assert tool is not None
    assert (tool.needs_approval, tool.effects, tool.unknown_outcome) == (False, "read", "report")


def test_declarations_are_kept_on_the_tool_and_stay_out_of_the_definition() -> None:
    """needs_approval (a per-call check), effects and unknown_outcome are kept; the model's
    definition is unchanged by them."""
    registry = ToolRegistry()

    def check(ctx: ToolContext, arguments: dict[str, Any]) -> bool:
        return bool(arguments["x"] > 1)

    @registry.tool(needs_approval=check, effects="write", unknown_outcome="rerun")
    def poke(x: int) -> int:
        """Poke."""
        return x

    tool = registry.get("poke")
    assert tool is not None
    assert tool.needs_approval is check and tool.effects == "write"
    assert tool.unknown_outcome == "rerun"
    assert set(tool.definition()["function"]) == {"name", "description", "parameters"}


@pytest.mark.parametrize(
    ("declaration", "message"),
    [
        ({"effects": "delete"}, "effects must be"),
        ({"needs_approval": "yes"}, "needs_approval must be"),
        ({"unknown_outcome": "guess"}, "unknown_outcome must be"),
    ],
)
def test_a_bad_declaration_is_refused_at_registration(
    declaration: dict[str, Any], message: str
) -> None:
    """A declaration outside its values raises ToolRegistrationError naming it."""
    registry = ToolRegistry()
    with pytest.raises(ToolRegistrationError, match=message):
        registry.register(lambda: 1, name="bad", **declaration)
