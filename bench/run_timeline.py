"""Where an ingest run's time goes under the daemon: from its request to its start (the run
queue, a new process, the code location loaded), its own run time, and the gap from one
run's end to the next one's start (the sensor's next tick, or the queue and launch of a
range already queued); and why a run failed."""

from __future__ import annotations

import itertools
import statistics


def ingest_timeline(records) -> str:
    """One line on the ingest runs among `records` (Dagster run records)."""
    ran = sorted(
        (
            r
            for r in records
            if r.dagster_run.job_name == "ingest_job" and r.start_time and r.end_time
        ),
        key=lambda r: r.start_time,
    )
    if not ran:
        return "no ingest run ended"
    waits = [r.start_time - r.create_timestamp.timestamp() for r in ran]
    runs = [r.end_time - r.start_time for r in ran]
    gaps = [b.start_time - a.end_time for a, b in itertools.pairwise(ran)]
    line = (
        f"{len(ran)} ingest runs: requested -> started median {statistics.median(waits):.1f} s, "
        f"run median {statistics.median(runs):.1f} s"
    )
    if gaps:
        line += (
            f", one run's end -> the next one's start median {statistics.median(gaps):.1f} s "
            f"(max {max(gaps):.1f} s)"
        )
    return line


def failure_reason(instance, run_id: str) -> str:
    """The last step error of a failed run, else its last log message."""
    logs = instance.all_logs(run_id)
    errors = [
        e.dagster_event.event_specific_data.error.message
        for e in logs
        if e.dagster_event
        and e.dagster_event.is_step_failure
        and e.dagster_event.event_specific_data.error
    ]
    if not errors:
        # A run that failed outside its steps (a resource, the executor) carries the error
        # on its run-failure event.
        errors = [
            str(e.dagster_event.event_specific_data.error.to_string())
            for e in logs
            if e.dagster_event
            and e.dagster_event.is_run_failure
            and getattr(e.dagster_event.event_specific_data, "error", None)
        ]
    why = errors[-1] if errors else (logs[-1].message if logs else "")
    return (why or "").strip()
