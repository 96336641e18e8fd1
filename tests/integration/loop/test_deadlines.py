"""Deadlines, on both protocols: a slow tool gets a timeout output; a slow model expires."""

from __future__ import annotations

import json
import time

import pytest

from .conftest import OpenDriver, Probe, call, fast, lines, scenario


@pytest.mark.parametrize("source", ["total_deadline", "expires_at"])
async def test_a_tool_slower_than_the_deadline_gets_a_timeout_output(
    open_driver: OpenDriver, probe: Probe, source: str
) -> None:
    """Tools still running at the deadline minus its margin get a timeout output and the
    batch is still submitted in one request, so the model answers in time. The deadline is
    total_deadline_s (both protocols) or the run's expires_at (Assistants)."""
    if source == "total_deadline":
        driver = await open_driver(policy=fast(total_deadline_s=1.5, expiry_margin_s=0.5))
        budget = 1.5
    else:
        driver = await open_driver(emulator={"run_ttl_s": 3.0}, policy=fast(expiry_margin_s=1.5))
        budget = 3.0
        if not driver.is_assistants:
            pytest.skip("responses have no expires_at: total_deadline_s is their bound")
    started = time.monotonic()
    result = await driver.run(lines(call("slow", seconds=30, label="late"), call("add", a=1, b=1)))
    assert time.monotonic() - started < budget, "the batch was not submitted before the deadline"
    assert result.status == "completed"
    late, add = result.tool_calls
    assert late.error_type == "timeout" and json.loads(late.output)["error"]["type"] == "timeout"
    assert add.output == "2"
    assert len(probe.cancelled) == 1
    (submitted,) = driver.submit_requests()
    assert [s["output"] for s in submitted] == [late.output, "2"]
    assert "add returned: 2" in result.text


async def test_a_model_slower_than_the_total_deadline_expires(open_driver: OpenDriver) -> None:
    """When the model outlasts total_deadline_s the result is ``expired`` with stopped_by
    ``total_deadline`` and the server turn is cancelled (Assistants run, background response)."""
    driver = await open_driver(policy=fast(total_deadline_s=0.5))
    driver.emu.set_scenario(scenario({"type": "text", "text": "late", "delay_ms": 5000}))
    started = time.monotonic()
    result = await driver.run("hello", **driver.cancellable)
    assert time.monotonic() - started < 2.0
    assert result.status == "expired" and result.stopped_by == "total_deadline"
    assert result.reason is not None and "total_deadline_s" in result.reason
    assert result.text == ""
    assert result.run_id is not None
    assert await driver.status(result.run_id) == "cancelled"
    await driver.wait_settled()
    assert driver.active_turns() == 0


async def test_outputs_too_late_for_expires_at_end_expired(open_driver: OpenDriver) -> None:
    """Assistants only (Responses have no expires_at): a run whose outputs cannot be
    submitted before expires_at ends ``expired``, promptly."""
    driver = await open_driver(emulator={"run_ttl_s": 1.0}, policy=fast(expiry_margin_s=-1.0))
    if not driver.is_assistants:
        pytest.skip("responses have no expires_at")
    started = time.monotonic()
    result = await driver.run(call("slow", seconds=30))
    assert time.monotonic() - started < 5.0
    assert result.status == "expired"
