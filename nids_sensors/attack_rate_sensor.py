"""Attack-rate sensor: a following scoring run that sees the newest window's attack rate
start failing its check says so in an `alerts` observation; this sensor then runs the
`alerts` step alone, so the check fails (and check_failure_alert_sensor posts it) now, not
when the scoring run ends."""

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

from nids_assets.scoring import ATTACK_RATE_ONSET
from nids_jobs.jobs import alerts_job


def attack_rate_sensor(interval_s: int) -> SensorDefinition:
    """The sensor, looking every `interval_s` seconds."""
    return sensor(
        name="attack_rate_sensor",
        job=alerts_job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Runs the alerts step (refresh, attack-rate check) as soon as a following scoring "
            "run reports that the newest window's attack rate started failing its check."
        ),
    )(_attack_rate_sensor)


def _attack_rate_sensor(context: SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_observations(
        AssetRecordsFilter(asset_key=AssetKey("alerts"), after_storage_id=after),
        limit=1000,
        ascending=True,
    ).records
    if not records:
        return SkipReason("no alerts observed since the last look")
    newest = str(max(r.storage_id for r in records))
    onsets = [
        r
        for r in records
        if (value := r.asset_event.metadata.get(ATTACK_RATE_ONSET)) is not None and value.value
    ]
    if not onsets:
        return SensorResult(
            skip_reason=SkipReason("the attack rate did not start failing"), cursor=newest
        )
    request = RunRequest(run_key=f"attack-rate-onset:{onsets[-1].storage_id}")
    return SensorResult(run_requests=[request], cursor=newest)
