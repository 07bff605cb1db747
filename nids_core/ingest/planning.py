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

from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import dropwhile

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
class RequestedBatch:
    """An offset range requested as an ingest run: the lanes of the sensor's cursor hold
    these (oldest first), and a plan's new requests are these."""

    offsets: OffsetRange
    attempt: int = 1
    requested_at: float = 0.0
    generation: int = 0

    @property
    def run_key(self) -> str:
        return self.offsets.run_key(self.attempt, self.generation)

    def retry(self, now: float) -> RequestedBatch:
        """The same range again, as the next attempt."""
        return replace(self, attempt=self.attempt + 1, requested_at=now)

    def to_json(self) -> dict:
        """The cursor's form: the range's bounds (the cursor holds topic and partition)."""
        return {
            "start": self.offsets.start,
            "end": self.offsets.end,
            "attempt": self.attempt,
            "requested_at": self.requested_at,
            "generation": self.generation,
        }


@dataclass(frozen=True)
class Plan:
    batches: list[RequestedBatch]
    waiting: dict[int, str]  # partition -> why nothing was requested
    cursor: dict[int, list[RequestedBatch]]
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


def plan_batches(
    topic: str,
    committed: dict[int, int | None],
    watermarks: dict[int, Watermarks],
    cursor: dict[int, list[RequestedBatch]],
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

    Only real ranges are ever planned or kept (an OffsetRange is never empty): a
    partition reset to an empty log keeps its new generation and an empty lane, and is
    planned afresh when records arrive.
    """
    generations = dict(generations or {})
    batches: list[RequestedBatch] = []
    waiting: dict[int, str] = {}
    new_cursor = {p: list(lane) for p, lane in cursor.items()}
    for p in sorted(watermarks):
        lane = list(cursor.get(p, []))
        planner = _PartitionPlanner(
            topic, p, watermarks[p], statuses, max_batch_records, now, queue_next
        )
        decided = planner.plan(
            committed.get(p), lane, max([generations.get(p, 0), *(b.generation for b in lane)])
        )
        batches += decided.requests
        new_cursor[p], generations[p] = decided.lane, decided.generation
        if decided.waiting:
            waiting[p] = decided.waiting
    return Plan(batches, waiting, new_cursor, generations)


@dataclass
class _PartitionPlan:
    lane: list[RequestedBatch]
    generation: int
    requests: list[RequestedBatch] = field(default_factory=list)
    waiting: str | None = None  # why nothing (more) was requested


@dataclass
class _PartitionPlanner:
    """The decision for one partition: follow the head of its lane (wait for it, queue a
    range behind it, retry it), or plan afresh from the first uncommitted offset."""

    topic: str
    partition: int
    marks: Watermarks
    statuses: dict[str, tuple[BatchStatus, float | None]]
    max_batch_records: int
    now: float
    queue_next: bool

    def plan(
        self, committed: int | None, lane: list[RequestedBatch], generation: int
    ) -> _PartitionPlan:
        original, reset = lane, ""
        if committed is not None and committed > self.marks.high:
            # The committed offset points past the log's end: the log was recreated or
            # truncated. Kafka's consumers reset such an offset; so does this planner.
            reset = f"committed offset {committed} is beyond the high watermark {self.marks.high}"
            committed, lane = None, []
        start = first_uncommitted(committed, self.marks)
        # Batches the group has committed past are done, whatever their run says yet.
        lane = list(dropwhile(lambda b: b.offsets.end <= start, lane))
        if lane:
            head = lane[0]
            status, ended_at = self.statuses.get(head.run_key, (BatchStatus.UNKNOWN, None))
            if status is BatchStatus.IN_FLIGHT or (
                status is BatchStatus.UNKNOWN and self.now - head.requested_at < UNSEEN_RUN_GRACE_S
            ):
                return self._behind_head(lane, status, generation)
            if status is not BatchStatus.SUCCEEDED and head.offsets.end <= self.marks.high:
                return self._retry_head(lane, status, ended_at, generation)
            # Its run committed it, yet the group is behind it again (offsets reset or
            # reused), or the range is no longer in the log: plan afresh.
            span = head.offsets
            reset = (
                f"batch [{span.start}, {span.end}) succeeded but the group is at {start}"
                if status is BatchStatus.SUCCEEDED
                else f"batch [{span.start}, {span.end}) lies beyond the log's end"
            )
        return self._afresh(start, reset, generation + 1 if reset else generation, original)

    def _behind_head(
        self, lane: list[RequestedBatch], status: BatchStatus, generation: int
    ) -> _PartitionPlan:
        """The head's run is in flight: wait for it, and with a run queue that serialises
        the partition, queue the next range now. Its run waits for this one in the run
        queue, so it starts as this one ends instead of a sensor tick later; it lands
        nothing unless every offset before it is committed."""
        span = lane[0].offsets
        waiting = f"batch [{span.start}, {span.end}) in flight"
        requests = []
        if (
            self.queue_next
            and status is BatchStatus.IN_FLIGHT
            and len(lane) == 1
            and self.marks.high > span.end
        ):
            end = min(self.marks.high, span.end + self.max_batch_records)
            successor = RequestedBatch(
                OffsetRange(self.topic, self.partition, span.end, end), 1, self.now, generation
            )
            requests.append(successor)
            lane = [*lane, successor]
            waiting += f"; [{span.end}, {end}) queued behind it"
        return _PartitionPlan(lane, generation, requests, waiting)

    def _retry_head(
        self,
        lane: list[RequestedBatch],
        status: BatchStatus,
        ended_at: float | None,
        generation: int,
    ) -> _PartitionPlan:
        """The head's run failed (or was never seen): the same range again after its
        backoff, never another one. A range queued behind it keeps its own bounds and is
        retried in turn, so no offset is read twice under two ranges and none is skipped."""
        head = lane[0]
        since = self.now - (ended_at or head.requested_at)
        delay = retry_delay_s(head.attempt)
        if status is BatchStatus.FAILED and since < delay:
            span = head.offsets
            waiting = (
                f"batch [{span.start}, {span.end}) failed (attempt "
                f"{head.attempt}); retry in {delay - since:.0f} s"
            )
            return _PartitionPlan(lane, generation, waiting=waiting)
        retry = head.retry(self.now)
        return _PartitionPlan([retry, *lane[1:]], generation, [retry])

    def _afresh(
        self, start: int, reset: str, generation: int, original: list[RequestedBatch]
    ) -> _PartitionPlan:
        """A new range from `start`, if the log holds records there."""
        if self.marks.high <= start:
            waiting = f"no new records (committed {start}, high watermark {self.marks.high})"
            if reset:
                waiting += f"; offsets reset ({reset}), generation {generation}"
                return _PartitionPlan([], generation, waiting=waiting)
            # Keep the last batch the group committed past: should the log be reused
            # (a broker that lost it), its success behind the group reveals the reset.
            return _PartitionPlan(original[-1:], generation, waiting=waiting)
        end = min(self.marks.high, start + self.max_batch_records)
        batch = RequestedBatch(
            OffsetRange(self.topic, self.partition, start, end), 1, self.now, generation
        )
        waiting = f"offsets reset ({reset}): reading again from {start}" if reset else None
        return _PartitionPlan([batch], generation, [batch], waiting)
