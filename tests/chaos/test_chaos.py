"""CI-sized chaos runs: the promises of DESIGN.md "Policies" under random, seeded faults.

The full 1,000-run version is ``python -m tests.chaos.chaos --runs 1000`` (see the README).
"""

from __future__ import annotations

import pytest

from runtime.emulator import FaultSpec

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
