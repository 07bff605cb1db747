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

import os
from pathlib import Path

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

WORKER_TAG = "nids/worker"
_ACTIVE = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        import socket

        return socket.gethostname()


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "pid:[?]"


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return round(process.create_time(), 2)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def _place() -> str:
    return f"{_boot_id()}/{_pid_namespace()}"


def worker_tag_value(pid: int | None = None) -> str:
    """`<boot id>/<pid namespace>/<pid>/<start time>` of a process (default: this one)."""
    pid = pid or os.getpid()
    return f"{_place()}/{pid}/{_start_time(pid)}"


def tag_run_worker(instance: DagsterInstance, run_id: str) -> None:
    """Record on the run where its worker process runs (once per run)."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.tags.get(WORKER_TAG) is None:
        instance.add_run_tags(run_id, {WORKER_TAG: worker_tag_value()})


def worker_gone(tag: str) -> bool | None:
    """True when the tagged process is known dead, False when it runs, None when it lives
    where this process cannot see (another host or PID namespace)."""
    place, _, rest = tag.rpartition("/")
    place, _, pid = place.rpartition("/")
    if place != _place() or not pid.isdigit():
        return None
    started = _start_time(int(pid))
    return started is None or f"{started}" != rest


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
