"""Where a requested run stands, as the sensors that requested it see it."""

from __future__ import annotations

from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from nids_core.ingest.planning import BatchStatus

# A run requested and not ended yet (queued, launching, running, cancelling).
IN_FLIGHT_STATUSES = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
    DagsterRunStatus.MANAGED,
]
_FAILED = {DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def in_flight_run(instance: DagsterInstance, job_name: str | None = None) -> str | None:
    """The id of a run (of `job_name`, when given) that is in flight, if any."""
    records = instance.get_run_records(
        filters=RunsFilter(job_name=job_name, statuses=IN_FLIGHT_STATUSES), limit=1
    )
    return records[0].dagster_run.run_id if records else None


def run_status(instance: DagsterInstance, run_key: str) -> tuple[BatchStatus, float | None]:
    """Status of the run requested under `run_key` and, once it ended, its end time."""
    records = instance.get_run_records(
        filters=RunsFilter(tags={"dagster/run_key": run_key}), limit=1
    )
    if not records:
        return BatchStatus.UNKNOWN, None
    record = records[0]
    status = record.dagster_run.status
    if status in IN_FLIGHT_STATUSES:
        return BatchStatus.IN_FLIGHT, None
    if status in _FAILED:
        return BatchStatus.FAILED, record.end_time
    return BatchStatus.SUCCEEDED, record.end_time
