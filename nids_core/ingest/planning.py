"""Which offset ranges to ingest next: the Kafka sensor's decisions as a pure function.

Per partition at most one batch runs at a time, and the group's committed offset only ever
moves forward over contiguous, durable data. While a batch's run is in flight, the next
range is requested behind it (a lane of at most two), so the run queue starts it as soon
as the first ends; its run lands nothing unless every offset before its range is
committed (`ensure_contiguous`). A batch whose run failed (or whose run's process is gone)
is requested again, the same range under a new attempt number, after an exponential
backoff; it is never skipped, and a range queued behind it keeps its bounds and follows.

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
    cursor: dict[int, list[InFlightBatch]]
    # partition -> generation of its run keys; kept apart from the lane, which only ever
    # holds real ranges (start < end), so an idle partition still carries its generation.
    generations: dict[int, int]


def retry_delay_s(attempt: int, base_s: float = 10.0, cap_s: float = 300.0) -> float:
    """Backoff before attempt `attempt + 1` of a failed batch."""
    return min(cap_s, base_s * 2 ** (attempt - 1))


def first_uncommitted(committed: int | None, marks: Watermarks) -> int:
    """The first offset the group still has to read: its committed offset, or the low
    watermark when nothing valid is committed (none yet, beyond the log's end after the
    topic was recreated, or below the log's start after retention)."""
    if committed is None or committed > marks.high:
        return marks.low
    return max(committed, marks.low)


class GapBeforeRange(RuntimeError):
    """Offsets before a batch's range are not committed yet: it was queued behind a batch
    that has not succeeded."""


def ensure_contiguous(offsets: OffsetRange, committed: int | None, marks: Watermarks) -> None:
    """Refuse a range that would leave uncommitted offsets behind it. A range starting at
    or before the first uncommitted offset (a re-run included) is fine."""
    first = first_uncommitted(committed, marks)
    if first < offsets.start:
        raise GapBeforeRange(
            f"{offsets.topic}[{offsets.partition}]: offsets [{first}, {offsets.start}) before "
            f"batch [{offsets.start}, {offsets.end}) are not committed yet (the batch queued "
            "ahead of it has not succeeded); nothing was landed. The sensor requests this "
            "range again once they are."
        )


def run_key(topic: str, partition: int, batch: InFlightBatch) -> str:
    return batch.offsets(topic, partition).run_key(batch.attempt, batch.generation)


def plan_batches(
    topic: str,
    committed: dict[int, int | None],
    watermarks: dict[int, Watermarks],
    cursor: dict[int, list[InFlightBatch]],
    statuses: dict[str, tuple[BatchStatus, float | None]],
    max_batch_records: int,
    now: float,
    queue_next: bool = True,
    generations: dict[int, int] | None = None,
) -> Plan:
    """Decide the next batch of each partition.

    `cursor[p]` is the partition's lane: the batches requested and not yet known to be
    committed, oldest first. `statuses[key]` is the status (and end time, if ended) of the
    run requested under run key `key`; a key missing is a run not seen yet. With
    `queue_next` (the run queue starts one run per partition at a time), the next range is
    requested while a partition's run is in flight. `generations[p]` is the generation of
    the partition's run keys (see the module docstring); it defaults to its lane's.

    Only real ranges (start < end) are ever planned or kept: a partition reset to an empty
    log keeps its new generation and an empty lane, and is planned afresh when records
    arrive.
    """
    generations = dict(generations or {})
    batches: list[PlannedBatch] = []
    waiting: dict[int, str] = {}
    new_cursor = {p: list(lane) for p, lane in cursor.items()}
    for p in sorted(watermarks):
        marks = watermarks[p]
        c = committed.get(p)
        lane = [b for b in cursor.get(p, []) if b.start < b.end]
        generation = max([generations.get(p, 0), *(b.generation for b in lane)])
        reset = ""
        if c is not None and c > marks.high:
            # The committed offset points past the log's end: the log was recreated or
            # truncated. Kafka's consumers reset such an offset; so does this planner.
            reset = f"committed offset {c} is beyond the high watermark {marks.high}"
            c = None
        start = first_uncommitted(c, marks)
        if reset:
            lane = []
        # Batches the group has committed past are done, whatever their run says yet.
        while lane and lane[0].end <= start:
            lane.pop(0)
        if lane:
            head = lane[0]
            status, ended_at = statuses.get(run_key(topic, p, head), (BatchStatus.UNKNOWN, None))
            if status is BatchStatus.IN_FLIGHT or (
                status is BatchStatus.UNKNOWN and now - head.requested_at < UNSEEN_RUN_GRACE_S
            ):
                waiting[p] = f"batch [{head.start}, {head.end}) in flight"
                if (
                    queue_next
                    and status is BatchStatus.IN_FLIGHT
                    and len(lane) == 1
                    and marks.high > head.end
                ):
                    # Queue the next range now: its run waits for this one in the run
                    # queue (one run per partition at a time), so it starts as this one
                    # ends instead of a sensor tick later. It lands nothing unless every
                    # offset before it is committed.
                    end = min(marks.high, head.end + max_batch_records)
                    successor = InFlightBatch(head.end, end, 1, now, generation)
                    batches.append(PlannedBatch(successor.offsets(topic, p), 1, generation))
                    lane.append(successor)
                    waiting[p] += f"; [{head.end}, {end}) queued behind it"
                new_cursor[p] = lane
                generations[p] = generation
                continue
            if status is BatchStatus.SUCCEEDED or head.end > marks.high:
                # Its run committed it, yet the group is behind it again (offsets reset or
                # reused), or the range is no longer in the log: plan afresh below.
                reset = (
                    f"batch [{head.start}, {head.end}) succeeded but the group is at {start}"
                    if status is BatchStatus.SUCCEEDED
                    else f"batch [{head.start}, {head.end}) lies beyond the log's end"
                )
                lane = []
            else:
                since = now - (ended_at or head.requested_at)
                delay = retry_delay_s(head.attempt)
                if status is BatchStatus.FAILED and since < delay:
                    waiting[p] = (
                        f"batch [{head.start}, {head.end}) failed (attempt "
                        f"{head.attempt}); retry in {delay - since:.0f} s"
                    )
                    new_cursor[p] = lane
                    generations[p] = generation
                    continue
                # The same range again, never another one: a range queued behind it keeps
                # its own bounds and is retried in turn, so no offset is read twice under
                # two ranges and none is skipped.
                retry = InFlightBatch(head.start, head.end, head.attempt + 1, now, generation)
                batches.append(PlannedBatch(retry.offsets(topic, p), retry.attempt, generation))
                new_cursor[p] = [retry, *lane[1:]]
                generations[p] = generation
                continue
        if reset:
            generation += 1
        generations[p] = generation
        if marks.high <= start:
            waiting[p] = f"no new records (committed {start}, high watermark {marks.high})"
            if reset:
                waiting[p] += f"; offsets reset ({reset}), generation {generation}"
                new_cursor[p] = []
            else:
                # Keep the last batch the group committed past: should the log be reused
                # (a broker that lost it), its success behind the group reveals the reset.
                new_cursor[p] = [b for b in cursor.get(p, []) if b.start < b.end][-1:]
            continue
        end = min(marks.high, start + max_batch_records)
        batch = InFlightBatch(start, end, 1, now, generation)
        batches.append(PlannedBatch(OffsetRange(topic, p, start, end), 1, generation))
        new_cursor[p] = [batch]
        if reset:
            waiting[p] = f"offsets reset ({reset}): reading again from {start}"
    return Plan(batches, waiting, new_cursor, generations)
