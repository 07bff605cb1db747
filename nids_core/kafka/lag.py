"""Consumer lag: high watermark minus the group's committed offset, per partition."""

from __future__ import annotations

from dataclasses import dataclass

from nids_core.kafka.log import FlowLogClient


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int | None
    high: int
    low: int

    @property
    def lag(self) -> int:
        # Nothing committed yet, or an offset beyond the log's end (the topic was recreated):
        # everything still in the log is unconsumed.
        valid = self.committed is not None and self.committed <= self.high
        start = self.committed if valid else self.low
        return max(0, self.high - start)


def measure_lag(client: FlowLogClient, topic: str) -> list[PartitionLag]:
    partitions = client.partitions(topic)
    committed = client.committed(topic, partitions)
    marks = client.watermarks(topic, partitions)
    return [PartitionLag(p, committed[p], marks[p].high, marks[p].low) for p in partitions]


def lag_verdict(lags: list[PartitionLag], warn: int, fail: int) -> tuple[bool, str]:
    """(passed, severity) for the worst partition: ERROR above `fail`, WARN above `warn`."""
    worst = max((x.lag for x in lags), default=0)
    if worst > fail:
        return False, "ERROR"
    if worst > warn:
        return False, "WARN"
    return True, "WARN"


@dataclass(frozen=True)
class Progress:
    """Since when a partition's committed offset has stood where it is (with records
    waiting behind it or not)."""

    committed: int | None
    since: float


def track_progress(
    previous: dict[int, Progress], lags: list[PartitionLag], now: float
) -> dict[int, Progress]:
    """Each partition's progress after this look: `since` is kept while its committed offset
    stands still with records waiting, and starts again whenever the offset moves or
    nothing waits (an idle partition is not stalled)."""
    out = {}
    for x in lags:
        before = previous.get(x.partition)
        if x.lag > 0 and before is not None and before.committed == x.committed:
            out[x.partition] = before
        else:
            out[x.partition] = Progress(x.committed, now)
    return out


def stalled_partitions(
    progress: dict[int, Progress], lags: list[PartitionLag], now: float, stall_s: float
) -> dict[int, str]:
    """Partitions whose records have waited longer than `stall_s` with no batch committed,
    whatever the size of their lag, and why."""
    out = {}
    for x in lags:
        p = progress.get(x.partition)
        if x.lag > 0 and p is not None and now - p.since >= stall_s:
            out[x.partition] = (
                f"partition {x.partition}: {x.lag} records waiting, no batch committed for "
                f"{(now - p.since) / 60:.0f} min (committed offset {x.committed})"
            )
    return out
