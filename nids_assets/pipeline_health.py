"""What shows the pipeline has stopped without failing a run: sensors whose ticks keep
failing, and landed flows that scoring has not reached. Read from the Dagster instance;
kafka_lag_sensor evaluates them every minute beside the consumer lag."""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance
from dagster._core.scheduler.instigation import InstigatorType, TickStatus

SCORING_KEEPS_UP_CHECK = "scoring_keeps_up"


@dataclass(frozen=True)
class FailingSensor:
    name: str
    streak_start_tick: int  # id of the first failed tick of the streak
    failed_ticks: int  # in the streak, as far as looked back
    error: str


def failure_streak(name: str, ticks: list, min_ticks: int) -> FailingSensor | None:
    """The streak of failed ticks a sensor's newest ticks (newest first) open with, if it
    is at least `min_ticks` long; keyed by its first (oldest) tick."""
    streak = []
    for tick in ticks:
        if tick.status != TickStatus.FAILURE:
            break
        streak.append(tick)
    if len(streak) < min_ticks:
        return None
    error = streak[0].error.message.strip() if streak[0].error else "no error recorded"
    return FailingSensor(name, streak[-1].tick_id, len(streak), error)


def failing_sensors(
    instance: DagsterInstance, names: set[str], min_ticks: int, look_back: int = 200
) -> list[FailingSensor]:
    """Sensors among `names` whose newest `min_ticks` ticks (at least) all failed."""
    out = []
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        if state.instigator_name not in names:
            continue
        ticks = instance.get_ticks(
            state.instigator_origin_id, state.selector_id, limit=max(min_ticks, look_back)
        )
        if (streak := failure_streak(state.instigator_name, list(ticks), min_ticks)) is not None:
            out.append(streak)
    return out


@dataclass(frozen=True)
class ScoringProgress:
    passed: bool
    metadata: dict


def scoring_progress(instance: DagsterInstance, now: float, stall_s: float) -> ScoringProgress:
    """Whether scoring keeps up with ingest: fails when a batch landed in `hot_flows` more
    than `stall_s` ago and no scoring pass (a materialization or a following run's
    observation of `flow_predictions`) has been reported since. Before the first scoring
    pass ever (no champion yet) it passes and says so: training the first model takes
    its time."""
    key = AssetKey("flow_predictions")
    records = [
        *instance.fetch_materializations(key, limit=1, ascending=False).records,
        *instance.fetch_observations(key, limit=1, ascending=False).records,
    ]
    if not records:
        return ScoringProgress(True, {"scored_through": "no scoring pass yet"})
    scored = max(records, key=lambda r: r.storage_id)
    first_unscored = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("hot_flows"), after_storage_id=scored.storage_id),
        limit=1,
        ascending=True,
    ).records
    waited = now - first_unscored[0].timestamp if first_unscored else 0.0
    passed = waited < stall_s
    metadata = {
        "last_scoring_pass_age_s": round(now - scored.timestamp, 1),
        "oldest_unscored_batch_age_s": round(waited, 1),
        "fail_after_s": stall_s,
    }
    if not passed:
        metadata["reason"] = (
            f"a batch landed {waited / 60:.0f} min ago and no scoring pass has run since "
            "(scoring_sensor skipping? model registry unreachable? scoring runs failing?)"
        )
    return ScoringProgress(passed, metadata)
