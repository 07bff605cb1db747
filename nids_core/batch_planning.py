"""Which offset ranges to ingest next: the Kafka sensor's decisions as a pure function.

Per partition at most one batch is in flight, so the group's committed offset only ever
moves forward over contiguous, durable data. A batch whose run failed is requested again,
the same range under a new attempt number, after an exponential backoff; it is never
skipped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from nids_core.kafka_log import Watermarks


class BatchStatus(StrEnum):
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # no run found for the key (yet)


@dataclass(frozen=True)
class InFlightBatch:
    start: int
    end: int
    attempt: int
    requested_at: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PlannedBatch:
    topic: str
    partition: int
    start: int
    end: int
    attempt: int

    @property
    def run_key(self) -> str:
        base = f"{self.topic}:{self.partition}:{self.start}-{self.end}"
        return base if self.attempt == 1 else f"{base}#{self.attempt}"


@dataclass(frozen=True)
class Plan:
    batches: list[PlannedBatch]
    waiting: dict[int, str]  # partition -> why nothing was requested
    cursor: dict[int, InFlightBatch]


def retry_delay_s(attempt: int, base_s: float = 10.0, cap_s: float = 300.0) -> float:
    """Backoff before attempt `attempt + 1` of a failed batch."""
    return min(cap_s, base_s * 2 ** (attempt - 1))


def run_key(topic: str, partition: int, batch: InFlightBatch) -> str:
    return PlannedBatch(topic, partition, batch.start, batch.end, batch.attempt).run_key


def plan_batches(
    topic: str,
    committed: dict[int, int | None],
    watermarks: dict[int, Watermarks],
    cursor: dict[int, InFlightBatch],
    statuses: dict[int, tuple[BatchStatus, float | None]],
    max_batch_records: int,
    now: float,
) -> Plan:
    """Decide the next batch of each partition.

    `statuses[p]` is the status (and end time, if ended) of the run for `cursor[p]`.
    """
    batches: list[PlannedBatch] = []
    waiting: dict[int, str] = {}
    new_cursor = dict(cursor)
    for p in sorted(watermarks):
        marks = watermarks[p]
        c = committed.get(p)
        start = marks.low if c is None else max(c, marks.low)
        inflight = cursor.get(p)
        if inflight is not None and inflight.end > start:
            status, ended_at = statuses.get(p, (BatchStatus.UNKNOWN, None))
            if status in (BatchStatus.IN_FLIGHT, BatchStatus.UNKNOWN) and (
                status is BatchStatus.IN_FLIGHT or now - inflight.requested_at < 60
            ):
                waiting[p] = f"batch [{inflight.start}, {inflight.end}) in flight"
                continue
            since = now - (ended_at or inflight.requested_at)
            delay = retry_delay_s(inflight.attempt)
            if status is BatchStatus.FAILED and since < delay:
                waiting[p] = (
                    f"batch [{inflight.start}, {inflight.end}) failed (attempt "
                    f"{inflight.attempt}); retry in {delay - since:.0f} s"
                )
                continue
            retry = InFlightBatch(inflight.start, inflight.end, inflight.attempt + 1, now)
            batches.append(PlannedBatch(topic, p, retry.start, retry.end, retry.attempt))
            new_cursor[p] = retry
            continue
        if marks.high <= start:
            waiting[p] = f"no new records (committed {start}, high watermark {marks.high})"
            continue
        end = min(marks.high, start + max_batch_records)
        batch = InFlightBatch(start, end, 1, now)
        batches.append(PlannedBatch(topic, p, start, end, 1))
        new_cursor[p] = batch
    return Plan(batches, waiting, new_cursor)
