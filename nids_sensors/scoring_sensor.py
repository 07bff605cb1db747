"""Scoring sensor: new hot flows are scored while ingest runs go on.

Eager automation waits until no upstream run is in progress; with a Zeek feed that never
stops, one ingest run is always in flight, so it never fired. This sensor instead requests
one scoring run (flow_predictions, then alerts) whenever `hot_flows` has materialized since
the last successful scoring run, or an ingest run is in flight, and no scoring run is in
flight (a scoring run follows the stream for a while: see flow_predictions).
The champion is read from the MLflow registry, not from Dagster's record of
`champion_model`, so a fresh Dagster instance pointed at a registry with a champion scores
from its first batch; without a servable champion the sensor says why and requests nothing.
A failed scoring run is requested again with backoff; the flows it missed stay unscored
until then and are scored by the next run (predictions are keyed on uid).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from nids_core.ingest.planning import UNSEEN_RUN_GRACE_S, BatchStatus, retry_delay_s
from nids_jobs.jobs import ingest_job, scoring_job
from nids_resources.mlflow import ModelRegistryResource
from nids_sensors.dead_runs import reap_dead_runs
from nids_sensors.run_state import in_flight_run, run_status


@dataclass
class ScoringCursor:
    covered: int = 0  # newest hot_flows storage id a successful scoring run has covered
    run_key: str | None = None  # the scoring run requested last, until it ended well
    upto: int = 0  # the newest hot_flows storage id when it was requested
    attempt: int = 0
    requested_at: float = 0.0

    @classmethod
    def load(cls, raw: str | None) -> ScoringCursor:
        return cls(**json.loads(raw)) if raw else cls()

    def dump(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def _newest_hot_flows(context: SensorEvaluationContext) -> int:
    result = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("hot_flows")), limit=1, ascending=False
    )
    return result.records[0].storage_id if result.records else 0


def _settle_pending(context: SensorEvaluationContext, cursor: ScoringCursor) -> str | None:
    """Fold the outcome of the last requested run into the cursor; a reason to wait, if any."""
    if cursor.run_key is None:
        return None
    status, ended_at = run_status(context.instance, cursor.run_key)
    now = time.time()
    if status is BatchStatus.SUCCEEDED:
        cursor.covered = max(cursor.covered, cursor.upto)
        cursor.run_key, cursor.attempt = None, 0
        return None
    if status is BatchStatus.IN_FLIGHT:
        return f"scoring run {cursor.run_key} in flight"
    if status is BatchStatus.UNKNOWN and now - cursor.requested_at < UNSEEN_RUN_GRACE_S:
        return f"scoring run {cursor.run_key} requested, not started yet"
    since = now - (ended_at or cursor.requested_at)
    delay = retry_delay_s(cursor.attempt)
    if since < delay:
        return f"scoring run {cursor.run_key} failed; retry in {delay - since:.0f} s"
    return None


def scoring_sensor(interval_s: int) -> SensorDefinition:
    """The sensor, looking every `interval_s` seconds (a setting read at load)."""
    return sensor(
        name="scoring_sensor",
        job=scoring_job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Requests a scoring run (flow_predictions, alerts) whenever hot_flows has new batches, "
            "while ingest runs keep going; one scoring run at a time; a failed one is retried with "
            "backoff. Needs a servable `champion` in the MLflow registry."
        ),
    )(_scoring_sensor)


def _scoring_sensor(context: SensorEvaluationContext, model_registry: ModelRegistryResource):
    reap_dead_runs(context.instance, job_names=[scoring_job.name])
    cursor = ScoringCursor.load(context.cursor)
    in_flight = in_flight_run(context.instance, scoring_job.name)
    wait = _settle_pending(context, cursor)
    if in_flight:
        wait = wait or f"scoring run {in_flight} in flight"
    if wait:
        return SensorResult(skip_reason=SkipReason(wait), cursor=cursor.dump())
    newest = _newest_hot_flows(context)
    ahead = ""
    if newest <= cursor.covered and cursor.run_key is None:
        # Checked before asking the registry: an idle tick costs an event-log query or two.
        if not in_flight_run(context.instance, ingest_job.name):
            return SensorResult(
                skip_reason=SkipReason("no new hot flows since the last scoring run"),
                cursor=cursor.dump(),
            )
        # An ingest run is landing flows: start scoring now, so that loading torch and the
        # model overlaps the ingest run and the run, following the stream, scores the batch
        # as soon as it lands.
        ahead = f":ahead-{int(time.time())}"
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    from nids_core.registry.versions import GateNotPassed, NoChampion

    try:
        champion = model_registry.registry().servable_champion().version
    except (NoChampion, GateNotPassed) as exc:
        return SensorResult(skip_reason=SkipReason(str(exc)), cursor=cursor.dump())
    except (MlflowException, OSError, SQLAlchemyError) as exc:
        # A tracking server that is down, or a SQLite store another process holds locked:
        # wait for it and say so; the batch stays unscored until a later tick.
        return SensorResult(
            skip_reason=SkipReason(f"model registry locked or unreachable: {str(exc)[:300]}"),
            cursor=cursor.dump(),
        )
    cursor.attempt += 1
    cursor.upto, cursor.requested_at = newest, time.time()
    cursor.run_key = f"score:{newest}:v{champion}{ahead}" + (
        f"#{cursor.attempt}" if cursor.attempt > 1 else ""
    )
    request = RunRequest(
        run_key=cursor.run_key,
        tags={"nids/champion": champion, "nids/hot_flows_upto": str(newest)},
    )
    return SensorResult(run_requests=[request], cursor=cursor.dump())
