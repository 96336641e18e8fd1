"""CI-sized chaos runs: the promises of DESIGN.md "Policies" under random, seeded faults.

The full 1,000-run version is ``python -m tests.chaos.chaos --runs 1000`` (figures in tests/README.md).
"""

from __future__ import annotations

import asyncio

import pytest

from runtime import AssistantsClient, Orchestrator, RunPolicy
from runtime.emulator import Emulator, FaultSpec
from tools import ToolRegistry

from .chaos import DEFAULT_FAULTS, ChaosReport, plan, render_markdown, run_chaos, run_phase

pytestmark = pytest.mark.slow

# Faults where the server may have acted before the failure (the hardest case for "never
# twice"), and a stream that goes silent until the client's idle timeout.
AMBIGUOUS_FAULTS = (
    "reset_after=0.05,500_after=0.05,stall=0.03,500=0.03,reset=0.03,"
    "retry_after_ms=20,stall_after=2,seed=11"
)


def assert_safe(report: ChaosReport) -> None:
    """Nothing done twice, nothing crashes silently, nothing left running."""
    assert report.duplicate_runs == 0, report.as_dict()
    assert report.duplicate_idempotency_keys == 0, report.as_dict()
    assert report.tools_executed_twice == 0, report.as_dict()
    assert report.logical_calls_executed_twice == 0, report.as_dict()
    assert report.logical_calls_missing == 0, report.as_dict()
    assert report.unhandled_exceptions == 0, report.unhandled_details
    assert report.loop_exceptions == 0, report.unhandled_details
    assert report.runs_not_terminal == 0, report.as_dict()
    assert report.emulator_internal_errors == 0, report.as_dict()


async def test_chaos_100_runs_reach_the_fault_free_outcome() -> None:
    """100 mixed runs with ~10% of requests faulted end exactly like the fault-free baseline."""
    baseline, report = await run_chaos(100, faults=DEFAULT_FAULTS, seed=7, concurrency=50)
    assert baseline is not None and baseline.problems() == [], baseline.as_dict()
    assert baseline.faulted_requests == 0 and baseline.matched_expected == 100
    print("\n" + render_markdown(report, baseline))
    assert report.problems() == [], report.as_dict()
    assert report.matched_expected == report.matched_baseline == 100
    assert_safe(report)
    # The faults really happened, at about the advertised rate, and were worked around.
    assert 0.05 <= report.fault_fraction <= 0.16, report.fault_fraction
    assert len(report.faults) >= 5, report.faults
    assert report.client_retries > 0
    assert report.log_events.get("run.create_ambiguous", 0) > 0
    assert report.tool_output_submissions == report.expected_submissions


async def test_chaos_ambiguous_faults_never_duplicate() -> None:
    """Faults after the server acted (reset/500 after, stalls) never duplicate a run or a tool."""
    jobs = plan(60, seed=11)
    report, outcomes = await run_phase(
        jobs, faults=FaultSpec.parse(AMBIGUOUS_FAULTS), seed=11, concurrency=30
    )
    assert_safe(report)
    assert report.faults.get("reset_after", 0) + report.faults.get("500_after", 0) > 0
    # Every run either reached the fault-free outcome or raised a typed error to its caller.
    failed = [o for o in outcomes if o.status != "completed"]
    assert all(o.error and not o.unhandled for o in failed), failed
    assert report.matched_expected + len(failed) == report.runs
    assert report.matched_expected >= 55, report.mismatches


async def test_chaos_with_cancellations_never_duplicates_or_crashes() -> None:
    """60 runs, a third cancelled by their caller at random moments, under faults: no
    duplicate run or tool, no unhandled error, every run not cancelled reaches its outcome.
    The cancellations fall within 60 ms of the start, while the runs are surely in flight (a
    run takes longer than that even on a fast machine)."""
    jobs = plan(60, seed=5, cancel_rate=0.35, cancel_window_s=0.06)
    report, outcomes = await run_phase(
        jobs, faults=FaultSpec.parse(DEFAULT_FAULTS + ",seed=5"), seed=5, concurrency=30
    )
    assert report.cancel_planned >= 10 and report.cancelled >= 5, report.as_dict()
    assert report.duplicate_runs == report.duplicate_idempotency_keys == 0
    assert report.tools_executed_twice == report.logical_calls_executed_twice == 0
    assert report.unhandled_exceptions == report.loop_exceptions == 0, report.unhandled_details
    assert all(o.error == "CancelledError" for o in outcomes if o.cancelled)
    assert report.matched_expected + report.cancelled == report.runs, report.mismatches
    # A cancelled caller leaves its run cancelled, or completed when the run won the race.
    assert report.runs_not_terminal == 0
    assert set(report.cancelled_server_status) <= {
        "cancelled",
        "completed",
        "no run created yet",
    }, report.cancelled_server_status


async def test_cancel_while_create_is_in_flight_leaves_no_run_behind() -> None:
    """Cancelling the caller while the create-run request is still being processed leaves no
    active run on the server."""
    registry = ToolRegistry()

    @registry.tool
    def echo(text: str) -> str:
        """Echo text."""
        return text

    async with (
        Emulator() as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-chaos-cancel-0000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        orch = Orchestrator(client, registry, policy=RunPolicy(poll_interval_s=0.05))
        thread = await client.create_thread(
            messages=[{"role": "user", "content": '/call echo {"text": "x"}'}]
        )
        emu.inject("slow", method="POST", path=r"/runs$", ms=300)  # the server acts late
        task = asyncio.ensure_future(orch.run(thread.id, assistant.id))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await orch.aclose()
        await asyncio.sleep(0.6)  # the server has created (and driven) the run by now
        statuses = [run["status"] for run in emu.runs(thread.id)]
    assert statuses in ([], ["cancelled"]), statuses


async def test_chaos_responses_backend_reaches_the_fault_free_outcome() -> None:
    """The Responses backend under the same 10% faults: same outcomes, no duplicate response
    (none of these faults lets the server act on a request whose answer is lost)."""
    baseline, report = await run_chaos(
        90, faults=DEFAULT_FAULTS, seed=3, concurrency=30, protocol="responses"
    )
    assert baseline is not None and baseline.problems() == [], baseline.as_dict()
    assert report.problems() == [], report.as_dict()
    assert report.matched_expected == report.matched_baseline == 90
    assert report.duplicate_responses == 0
    assert report.faulted_requests > 0 and report.client_retries > 0
    assert_safe(report)


async def test_busy_thread_waits_do_not_use_up_create_attempts() -> None:
    """After waiting out a busy thread, one 500 on create (create_attempts=2) is still retried."""
    async with (
        Emulator() as emu,
        AssistantsClient(base_url=emu.base_url, api_key="sk-chaos-busy-00000") as client,
    ):
        assistant = await client.create_assistant(model="gpt-4o")
        thread = await client.create_thread(
            messages=[{"role": "user", "content": '/call echo {"text": "x"}'}]
        )
        other = await client.create_run(thread.id, assistant.id)  # parks in requires_action
        while (await client.retrieve_run(thread.id, other.id)).status != "requires_action":
            await asyncio.sleep(0.02)
        policy = RunPolicy(poll_interval_s=0.05, create_attempts=2)
        orch = Orchestrator(client, ToolRegistry(), policy=policy)
        task = asyncio.ensure_future(
            orch.run(
                thread.id, assistant.id, additional_messages=[{"role": "user", "content": "hi"}]
            )
        )
        await asyncio.sleep(0.2)  # our first create was refused: the thread is busy
        emu.inject("500", method="POST", path=r"/runs$")  # the next create fails once
        await client.cancel_run(thread.id, other.id)
        result = await task
    assert result.status == "completed"
    assert result.text == "You said: hi"


async def test_chaos_shared_threads_never_duplicate() -> None:
    """60 runs sharing 10 threads under faults (busy-thread waits at work): no duplicate run or
    tool, nothing left active, and every run either reaches its outcome or raises a typed
    error."""
    jobs = plan(60, seed=9)
    report, outcomes = await run_phase(
        jobs, faults=FaultSpec.parse(DEFAULT_FAULTS + ",seed=9"), seed=9, concurrency=30, threads=10
    )
    assert_safe(report)
    failed = [o for o in outcomes if o.status != "completed"]
    assert all(o.error and not o.unhandled for o in failed), failed
    assert report.matched_expected + len(failed) == report.runs, report.mismatches
