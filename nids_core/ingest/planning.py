"""Which offset ranges to ingest next: the Kafka sensor's decisions as a pure function.

Per partition at most one batch is in flight, so the group's committed offset only ever
moves forward over contiguous, durable data. A batch whose run failed (or whose run's
process is gone) is requested again, the same range under a new attempt number, after an
exponential backoff; it is never skipped.

Offsets are reused when a broker loses its log, a topic is recreated or the group's offsets
are reset. Then a batch "succeeded" but the committed offset is behind it again, or the
committed offset lies beyond the high watermark: the partition is planned afresh from
where Kafka now says to start (like `auto.offset.reset=earliest`), under a new generation,
so every run key stays new. The landing zone keeps both generations' records apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

from nids_core.kafka.log import Watermarks
from nids_core.kafka.offsets import OffsetRange


class BatchStatus(StrEnum):
    IN_FLIGHT = "in_flight"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UNKNOWN = "unknown"  # no run found for the key (yet)


# An UNKNOWN run (requested, not seen in run storage) is waited for this long, then retried.
UNSEEN_RUN_GRACE_S = 60.0


@dataclass(frozen=True)
class InFlightBatch:
    start: int
    end: int
    attempt: int
    requested_at: float
    generation: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    def offsets(self, topic: str, partition: int) -> OffsetRange:
        return OffsetRange(topic, partition, self.start, self.end)


@dataclass(frozen=True)
class PlannedBatch:
    offsets: OffsetRange
    attempt: int
    generation: int = 0

    @property
    def run_key(self) -> str:
        return self.offsets.run_key(self.attempt, self.generation)


@dataclass(frozen=True)
class Plan:
    batches: list[PlannedBatch]
    waiting: dict[int, str]  # partition -> why nothing was requested
    cursor: dict[int, InFlightBatch]


def retry_delay_s(attempt: int, base_s: float = 10.0, cap_s: float = 300.0) -> float:
    """Backoff before attempt `attempt + 1` of a failed batch."""
    return min(cap_s, base_s * 2 ** (attempt - 1))


def run_key(topic: str, partition: int, batch: InFlightBatch) -> str:
    return batch.offsets(topic, partition).run_key(batch.attempt, batch.generation)


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
        inflight = cursor.get(p)
        generation = inflight.generation if inflight is not None else 0
        reset = ""
        if c is not None and c > marks.high:
            # The committed offset points past the log's end: the log was recreated or
            # truncated. Kafka's consumers reset such an offset; so does this planner.
            reset = f"committed offset {c} is beyond the high watermark {marks.high}"
            c = None
        start = marks.low if c is None else max(c, marks.low)
        if inflight is not None and inflight.end > start and not reset:
            status, ended_at = statuses.get(p, (BatchStatus.UNKNOWN, None))
            if status is BatchStatus.IN_FLIGHT or (
                status is BatchStatus.UNKNOWN and now - inflight.requested_at < UNSEEN_RUN_GRACE_S
            ):
                waiting[p] = f"batch [{inflight.start}, {inflight.end}) in flight"
                continue
            if status is BatchStatus.SUCCEEDED or inflight.end > marks.high:
                # Its run committed it, yet the group is behind it again (offsets reset or
                # reused), or the range is no longer in the log: plan afresh below.
                reset = (
                    f"batch [{inflight.start}, {inflight.end}) succeeded but the group is at "
                    f"{start}"
                    if status is BatchStatus.SUCCEEDED
                    else f"batch [{inflight.start}, {inflight.end}) lies beyond the log's end"
                )
            else:
                since = now - (ended_at or inflight.requested_at)
                delay = retry_delay_s(inflight.attempt)
                if status is BatchStatus.FAILED and since < delay:
                    waiting[p] = (
                        f"batch [{inflight.start}, {inflight.end}) failed (attempt "
                        f"{inflight.attempt}); retry in {delay - since:.0f} s"
                    )
                    continue
                retry = InFlightBatch(
                    inflight.start, inflight.end, inflight.attempt + 1, now, generation
                )
                batches.append(PlannedBatch(retry.offsets(topic, p), retry.attempt, generation))
                new_cursor[p] = retry
                continue
        if reset:
            generation += 1
        if marks.high <= start:
            waiting[p] = f"no new records (committed {start}, high watermark {marks.high})"
            if reset and inflight is not None:
                new_cursor[p] = InFlightBatch(start, start, 1, now, generation)
            continue
        end = min(marks.high, start + max_batch_records)
        batch = InFlightBatch(start, end, 1, now, generation)
        batches.append(PlannedBatch(OffsetRange(topic, p, start, end), 1, generation))
        new_cursor[p] = batch
        if reset:
            waiting[p] = f"offsets reset ({reset}): reading again from {start}"
    return Plan(batches, waiting, new_cursor)
