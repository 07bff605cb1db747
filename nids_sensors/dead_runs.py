"""Runs whose process is gone: found and failed, so their batch is retried and their pool
slot freed.

A run killed with its process (SIGKILL, the OOM killer, a lost pod or a restarted code
server that took its children along) stays STARTED in Dagster's storage: nothing writes
its end. Every run of this code location tags itself with where it runs (host boot id,
PID namespace, PID and the process's start time) when its resources start. A run whose
tag names this host and PID namespace, and whose process no longer exists (or the PID now
belongs to a later process), is dead: it is reported failed, with the reason, and its
concurrency slots are freed. Runs on other hosts or in other PID namespaces are left to
their run launcher's own monitoring (e.g. the Kubernetes launcher's health checks).
"""

from __future__ import annotations

from dagster import (
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)

from nids_core.worker_process import worker_gone
from nids_resources.run_worker import WORKER_TAG

_ACTIVE = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def reap_dead_runs(instance: DagsterInstance, job_names: list[str] | None = None) -> list[str]:
    """Report failed every active run whose worker process is gone; returns their ids."""
    reaped = []
    records = instance.get_run_records(filters=RunsFilter(statuses=_ACTIVE), limit=500)
    for record in records:
        run = record.dagster_run
        if job_names is not None and run.job_name not in job_names:
            continue
        tag = run.tags.get(WORKER_TAG)
        if not tag or worker_gone(tag) is not True:
            continue
        fresh = instance.get_run_by_id(run.run_id)
        if fresh is None or fresh.is_finished:
            continue
        message = (
            f"the run's worker process ({tag.rsplit('/', 2)[-2]}) is gone (killed, out of "
            "memory, or its code server died): marked failed so its work is retried and its "
            "concurrency slots are freed"
        )
        instance.report_engine_event(message, fresh)
        instance.report_run_failed(fresh, message)
        if instance.event_log_storage.supports_global_concurrency_limits:
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        reaped.append(run.run_id)
    return reaped


def dead_run_sensor(interval_s: int) -> SensorDefinition:
    """The sensor, looking every `interval_s` seconds (a setting read at load)."""
    return sensor(
        name="dead_run_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Finds runs still marked in progress whose worker process is gone (SIGKILL, OOM kill, "
            "a code server that died with its children) and reports them failed, freeing their "
            "DuckDB pool slot; the Kafka sensor then retries their batch. Complements Dagster's "
            "run monitoring (start timeout, dagster/max_runtime), which cannot see a dead process "
            "under the default run launcher."
        ),
    )(_dead_run_sensor)


def _dead_run_sensor(context: SensorEvaluationContext):
    reaped = reap_dead_runs(context.instance)
    if not reaped:
        return SkipReason("no dead runs")
    context.log.warning(f"reported {len(reaped)} dead runs failed: {', '.join(reaped)}")
    return SkipReason(f"reported {len(reaped)} dead runs failed: {', '.join(reaped)}")
