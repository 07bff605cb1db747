"""Drive the sensors and their runs in this process, on a real Dagster instance.

The Dagster daemon does this in production (`dagster dev`, or the daemon in `deploy/`);
the demo, the benchmark and the tests use the same sensors and jobs without a daemon:
each tick's run requests are executed in-process with the run key as a tag, exactly as
the daemon would launch them.
"""

from dataclasses import dataclass, field

from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    Definitions,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from nids_jobs.jobs import cold_flows_job, ingest_job, scoring_job


@dataclass
class DriveStats:
    ingest_runs: int = 0
    failed_runs: int = 0
    cold_runs: int = 0
    scoring_runs: int = 0
    skips: list[str] = field(default_factory=list)


def tick_sensor(
    defs: Definitions, instance: DagsterInstance, name: str, cursors: dict[str, str | None]
):
    """One evaluation of sensor `name` with its stored cursor: (run requests, skip reason,
    new cursor)."""
    sensor = defs.resolve_sensor_def(name)
    with build_sensor_context(
        instance=instance,
        cursor=cursors.get(name),
        resources=defs.resources,
        definitions=defs,
        sensor_name=name,
    ) as ctx:
        result = sensor(ctx)
    if isinstance(result, SkipReason):
        return [], result.skip_message, cursors.get(name)
    if isinstance(result, SensorResult):
        _apply_partition_requests(instance, result)
        skip = result.skip_reason.skip_message if result.skip_reason else None
        return list(result.run_requests or []), skip, result.cursor
    return list(result or []), None, ctx.cursor


def _apply_partition_requests(instance: DagsterInstance, result: SensorResult) -> None:
    """What the daemon does with a sensor's dynamic-partition requests."""
    for req in result.dynamic_partitions_requests or []:
        if isinstance(req, AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        elif isinstance(req, DeleteDynamicPartitionsRequest):
            for key in req.partition_keys:
                instance.delete_dynamic_partition(req.partitions_def_name, key)


def execute_request(
    defs: Definitions,
    instance: DagsterInstance,
    job_name: str,
    request: RunRequest,
    log_level: str | None = None,
) -> bool:
    """Run one sensor request in-process, tagged as the daemon would tag it."""
    job = defs.resolve_job_def(job_name)
    tags = {**(request.tags or {}), "dagster/run_key": request.run_key or ""}
    run_config = dict(request.run_config or {})
    if log_level:
        run_config["loggers"] = {"console": {"config": {"log_level": log_level}}}
    result = job.execute_in_process(
        run_config=run_config,
        instance=instance,
        tags=tags,
        partition_key=request.partition_key,
        raise_on_error=False,
    )
    return result.success


def _drive_sensor(
    defs: Definitions,
    instance: DagsterInstance,
    cursors: dict,
    sensor_name: str,
    default_job: str | None,
    log_level: str | None,
    max_rounds: int,
    stop_on_failure: bool,
    on_run=None,
    ops_config: dict | None = None,
) -> tuple[int, int, str | None]:
    """Tick a sensor and run what it requests in-process (each request in the job it
    names, else the sensor's own, with `ops_config` added to its run config), until it has
    nothing to request. Returns (runs, failed runs, the sensor's last skip reason)."""
    runs = failed = 0
    skip = None
    for _ in range(max_rounds):
        requests, skip, cursors[sensor_name] = tick_sensor(defs, instance, sensor_name, cursors)
        if not requests:
            break
        for req in requests:
            job = req.job_name or default_job
            assert job, f"{sensor_name} requested a run without naming its job"
            if ops_config:
                config = dict(req.run_config or {})
                config["ops"] = {**config.get("ops", {}), **ops_config}
                req = req.with_replaced_attrs(run_config=config)
            ok = execute_request(defs, instance, job, req, log_level)
            runs += 1
            failed += 0 if ok else 1
            if on_run:
                on_run(req, ok)
        if failed and stop_on_failure:
            break
    return runs, failed, skip


def run_scoring(
    defs: Definitions,
    instance: DagsterInstance,
    cursors: dict,
    log_level: str | None = None,
    max_rounds: int = 5,
) -> tuple[int, int]:
    """Tick the scoring sensor and run what it requests in-process, until it has nothing
    to request (or a run fails); each run scores once, rather than following the stream
    (the driver's caller goes on once it returns). Returns (runs, failed runs)."""
    runs, failed, _ = _drive_sensor(
        defs,
        instance,
        cursors,
        "scoring_sensor",
        scoring_job.name,
        log_level,
        max_rounds,
        stop_on_failure=True,
        ops_config={"flow_predictions": {"config": {"follow_seconds": 0}}},
    )
    return runs, failed


def drive_reference(
    defs: Definitions,
    instance: DagsterInstance,
    cursors: dict,
    log_level: str | None = None,
    max_rounds: int = 5,
    on_run=None,
) -> tuple[int, int, str | None]:
    """Tick the reference-corpus sensor and run what it requests (reads of capture files,
    then a first training when there is no champion) until it has nothing to request.
    Returns (runs, failed runs, the sensor's last skip reason)."""
    return _drive_sensor(
        defs,
        instance,
        cursors,
        "reference_corpus_sensor",
        None,
        log_level,
        max_rounds,
        stop_on_failure=False,
        on_run=on_run,
    )


def drain(
    defs: Definitions,
    instance: DagsterInstance,
    cursors: dict[str, str | None],
    max_ticks: int = 1000,
    on_run=None,
    log_level: str | None = None,
    cold: bool = True,
    serve: bool = True,
) -> DriveStats:
    """Tick the Kafka sensor and run its batches until it has nothing new, then (if `cold`)
    rebuild the cold days that changed. `cursors` is updated in place."""
    stats = DriveStats()
    for _ in range(max_ticks):
        requests, skip, cursors["kafka_ingest_sensor"] = tick_sensor(
            defs, instance, "kafka_ingest_sensor", cursors
        )
        if not requests:
            stats.skips.append(skip or "")
            break
        for req in requests:
            ok = execute_request(defs, instance, ingest_job.name, req, log_level)
            stats.ingest_runs += 1
            stats.failed_runs += 0 if ok else 1
            if on_run:
                on_run(req, ok)
        if stats.failed_runs:
            break
    if cold:
        requests, _, cursors["cold_flows_sensor"] = tick_sensor(
            defs, instance, "cold_flows_sensor", cursors
        )
        for req in requests:
            ok = execute_request(defs, instance, cold_flows_job.name, req, log_level)
            stats.cold_runs += 1
            stats.failed_runs += 0 if ok else 1
    if serve:
        runs, failed = run_scoring(defs, instance, cursors, log_level)
        stats.scoring_runs += runs
        stats.failed_runs += failed
    return stats
