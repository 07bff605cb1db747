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
