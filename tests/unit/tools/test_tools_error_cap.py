"""Error outputs stay valid JSON within the output cap, whatever the message holds."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from tools.encoding import MIN_OUTPUT_CHARS, error_output
from tools.schema import ArgumentIssue


@settings(deadline=None, max_examples=200)
@given(
    message=st.text(min_size=0, max_size=3000),
    issues=st.integers(min_value=0, max_value=40),
    cap=st.integers(min_value=MIN_OUTPUT_CHARS, max_value=2048),
)
def test_error_output_is_json_within_the_cap(message: str, issues: int, cap: int) -> None:
    """Any message (quotes, control characters, non-ASCII) and any number of issues fit."""
    details = [ArgumentIssue(f"field_{i}", 'bad "value"\n', "type_error") for i in range(issues)]
    text = error_output("invalid_arguments", message, "tool_x", details=details, max_chars=cap)
    assert len(text) <= cap
    body = json.loads(text)["error"]
    assert body["type"] == "invalid_arguments" and body["tool"] == "tool_x"
    kept = len(body.get("details", []))
    assert kept + body.get("details_omitted", 0) == issues
