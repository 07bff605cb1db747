"""Cold-store sensor: new landed batches are appended to their cold days; a closed day is
compacted once no batch has reached it for a while."""

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    RunConfig,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from nids_assets.cold import ColdFlowsConfig
from nids_jobs.jobs import cold_flows_job

# Batch names per append run: keeps a run config small when a backlog is drained.
BATCHES_PER_RUN = 200


@dataclass
class ColdCursor:
    """Where the sensor stands: the newest `flow_batch` materialization it has read, and
    the days it appended to that are not compacted yet (day -> epoch of the last append)."""

    after: int | None = None
    uncompacted: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, cursor: str | None) -> "ColdCursor":
        if not cursor:
            return cls()
        if cursor.isdigit():  # the cursor of a sensor that rebuilt days on every batch
            return cls(after=int(cursor))
        state = json.loads(cursor)
        return cls(after=state["after"], uncompacted=dict(state["uncompacted"]))

    def dump(self) -> str:
        return json.dumps({"after": self.after, "uncompacted": self.uncompacted}, sort_keys=True)


def cold_flows_sensor(
    interval_s: int, partitions: DailyPartitionsDefinition, compact_after_s: int
) -> SensorDefinition:
    """The sensor, looking every `interval_s` seconds, over the code location's daily
    partitions; a day is compacted `compact_after_s` after it closed and after its last
    append, whichever is later."""

    def evaluate(context: SensorEvaluationContext):
        return _cold_flows_sensor(context, partitions, compact_after_s, time.time())

    return sensor(
        name="cold_flows_sensor",
        job=cold_flows_job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Reads new `flow_batch` materializations and requests runs that append those "
            "batches to the cold days they touched (one run per stretch of consecutive days, "
            "keyed by the newest landing event); a day that closed, and got no new batch, "
            f"{compact_after_s} s ago is then compacted (rebuilt whole from the landing zone)."
        ),
    )(evaluate)


def _cold_flows_sensor(
    context: SensorEvaluationContext,
    partitions: DailyPartitionsDefinition,
    compact_after_s: int,
    now: float,
):
    state = ColdCursor.parse(context.cursor)
    result = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("flow_batch"), after_storage_id=state.after),
        limit=10_000,
        ascending=True,
    )
    requests: list[RunRequest] = []
    skip = "no new landed batches"
    appended: set[str] = set()
    if result.records:
        newest = max(r.storage_id for r in result.records)
        batches: dict[str, set[str]] = {}  # day -> batch names
        for record in result.records:
            md = record.asset_materialization.metadata if record.asset_materialization else {}
            dates = md.get("dates")
            for day in dates.value if dates is not None else {}:
                batches.setdefault(day, set()).add(str(md["batch"].value))
        valid = set(partitions.get_partition_keys())
        out_of_range = sorted(set(batches) - valid)
        if out_of_range:
            skip = (
                f"landed days outside the cold partitions: {', '.join(out_of_range)}; reload "
                "the code location (its partitions start at the first landed day) or set "
                "NIDS_COLD_START_DATE, then backfill cold_flows for them"
            )
            context.log.warning(skip)
        elif not batches:
            skip = "no landed days in range"
        appended = set(batches) & valid
        for first, last in _contiguous(sorted(appended)):
            names = sorted(
                set().union(*(batches[d] for d in sorted(appended) if first <= d <= last))
            )
            requests.extend(_append_requests(first, last, names, newest))
        for day in appended:
            state.uncompacted[day] = now
        state.after = newest
    for day, last_append in sorted(state.uncompacted.items()):
        if day in appended:
            continue
        if now >= max(_day_end(day), last_append) + compact_after_s:
            requests.append(
                RunRequest(run_key=f"cold-compact:{day}:{last_append:.3f}", partition_key=day)
            )
            del state.uncompacted[day]
    if not requests:
        return SensorResult(skip_reason=SkipReason(skip), cursor=state.dump())
    return SensorResult(run_requests=requests, cursor=state.dump())


def _day_end(day: str) -> float:
    start = datetime.combine(date.fromisoformat(day), datetime.min.time(), tzinfo=UTC)
    return (start + timedelta(days=1)).timestamp()


def _contiguous(days: list[str]) -> list[tuple[str, str]]:
    """Sorted ISO days grouped into runs of consecutive days: [(first, last), ...]."""
    groups: list[list[date]] = []
    for d in (date.fromisoformat(x) for x in days):
        if groups and d - groups[-1][-1] == timedelta(days=1):
            groups[-1].append(d)
        else:
            groups.append([d])
    return [(g[0].isoformat(), g[-1].isoformat()) for g in groups]


def _append_requests(first: str, last: str, names: list[str], newest: int) -> list[RunRequest]:
    """Runs appending `names` to the days first..last, at most BATCHES_PER_RUN each."""
    requests = []
    for i in range(0, len(names), BATCHES_PER_RUN):
        chunk = names[i : i + BATCHES_PER_RUN]
        config = RunConfig(ops={"cold_flows": ColdFlowsConfig(append_batches=chunk)})
        key = f"{newest}" if len(names) <= BATCHES_PER_RUN else f"{newest}:{i // BATCHES_PER_RUN}"
        requests.append(_range_request(first, last, key, config))
    return requests


def _range_request(first: str, last: str, key: str, config: RunConfig) -> RunRequest:
    """A plain partition run for a single day, a partition-range run for several."""
    if first == last:
        return RunRequest(run_key=f"cold:{first}:{key}", partition_key=first, run_config=config)
    return RunRequest(
        run_key=f"cold:{first}..{last}:{key}",
        run_config=config,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )
