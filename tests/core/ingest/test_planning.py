"""The Kafka sensor's batch planning and its cursor: ranges, retries, queues, resets."""

import pytest

from nids_core.ingest.planning import (
    BatchStatus,
    GapBeforeRange,
    RequestedBatch,
    ensure_contiguous,
    plan_batches,
    retry_delay_s,
)
from nids_core.ingest.sensor_cursor import dump_cursor, fresh_generation, load_cursor
from nids_core.kafka.log import Watermarks
from nids_core.kafka.offsets import OffsetRange

MARKS = {0: Watermarks(0, 250), 1: Watermarks(0, 0)}


def test_plan_caps_ranges_and_explains_idle_partitions():
    plan = plan_batches("t", {0: None, 1: None}, MARKS, {}, {}, 100, now=1000.0)
    assert [
        (b.offsets.partition, b.offsets.start, b.offsets.end, b.run_key) for b in plan.batches
    ] == [(0, 0, 100, "t:0:0-100")]
    assert plan.waiting == {1: "no new records (committed 0, high watermark 0)"}


def test_failed_batch_is_retried_same_range_after_backoff_never_skipped():
    cursor = {0: [RequestedBatch(OffsetRange("t", 0, 0, 100), 1, requested_at=1000.0)]}
    failed = {"t:0:0-100": (BatchStatus.FAILED, 1005.0)}
    early = plan_batches(
        "t", {0: None}, MARKS, cursor, failed, 100, now=1005.0 + retry_delay_s(1) - 1
    )
    assert not early.batches and "retry in" in early.waiting[0]
    later = plan_batches("t", {0: None}, MARKS, cursor, failed, 100, now=1005.0 + retry_delay_s(1))
    assert [b.run_key for b in later.batches] == ["t:0:0-100#2"]
    assert later.cursor[0][0].attempt == 2
    assert retry_delay_s(2) == 2 * retry_delay_s(1) and retry_delay_s(20) == 300


def test_succeeded_batch_moves_on_from_the_committed_offset():
    cursor = {0: [RequestedBatch(OffsetRange("t", 0, 0, 100), 1, requested_at=1000.0)]}
    done = {"t:0:0-100": (BatchStatus.SUCCEEDED, 1001.0)}
    plan = plan_batches("t", {0: 100}, MARKS, cursor, done, 100, 1002.0)
    assert [b.run_key for b in plan.batches] == ["t:0:100-200"]


def test_next_range_is_queued_behind_the_run_in_flight_and_follows_its_retries():
    """A run in flight gets one range queued behind it (the run queue starts it when the
    first ends). When the first fails, it is retried first, the queued range keeps its
    bounds, and is retried in its turn once the first succeeded: no offset skipped, none
    read under two ranges."""
    head = RequestedBatch(OffsetRange("t", 0, 0, 100), 1, requested_at=1000.0)
    running = {"t:0:0-100": (BatchStatus.IN_FLIGHT, None)}
    plan = plan_batches("t", {0: None}, MARKS, {0: [head]}, running, 100, now=1001.0)
    assert [b.run_key for b in plan.batches] == ["t:0:100-200"]
    assert [(b.offsets.start, b.offsets.end) for b in plan.cursor[0]] == [(0, 100), (100, 200)]
    assert "queued behind it" in plan.waiting[0]
    # One queued range at most.
    queued = {**running, "t:0:100-200": (BatchStatus.IN_FLIGHT, None)}
    assert not plan_batches("t", {0: None}, MARKS, plan.cursor, queued, 100, 1002.0).batches
    # The first fails; the queued one then fails too (the gap before it), landing nothing.
    failed = {
        "t:0:0-100": (BatchStatus.FAILED, 1003.0),
        "t:0:100-200": (BatchStatus.FAILED, 1004.0),
    }
    retry = plan_batches("t", {0: None}, MARKS, plan.cursor, failed, 100, now=1100.0)
    assert [b.run_key for b in retry.batches] == ["t:0:0-100#2"]
    assert [(b.offsets.start, b.offsets.end, b.attempt) for b in retry.cursor[0]] == [
        (0, 100, 2),
        (100, 200, 1),
    ]
    # The retry succeeds and commits 100: the queued range is retried, same bounds.
    done = {**failed, "t:0:0-100#2": (BatchStatus.SUCCEEDED, 1101.0)}
    follow = plan_batches("t", {0: 100}, MARKS, retry.cursor, done, 100, now=1102.0)
    assert [b.run_key for b in follow.batches] == ["t:0:100-200#2"]
    assert [(b.offsets.start, b.offsets.end) for b in follow.cursor[0]] == [(100, 200)]


def test_no_range_is_queued_unless_the_run_queue_serialises_the_partition():
    head = RequestedBatch(OffsetRange("t", 0, 0, 100), 1, requested_at=1000.0)
    running = {"t:0:0-100": (BatchStatus.IN_FLIGHT, None)}
    plan = plan_batches("t", {0: None}, MARKS, {0: [head]}, running, 100, 1001.0, False)
    assert not plan.batches and plan.waiting[0] == "batch [0, 100) in flight"


def test_a_batch_committed_past_makes_way_for_the_one_queued_behind_it():
    cursor = {
        0: [
            RequestedBatch(OffsetRange("t", 0, 0, 100), 1, 1000.0),
            RequestedBatch(OffsetRange("t", 0, 100, 200), 1, 1001.0),
        ]
    }
    statuses = {
        "t:0:0-100": (BatchStatus.IN_FLIGHT, None),  # committed, its run not ended yet
        "t:0:100-200": (BatchStatus.IN_FLIGHT, None),
    }
    plan = plan_batches("t", {0: 100}, MARKS, cursor, statuses, 100, now=1002.0)
    assert [b.run_key for b in plan.batches] == ["t:0:200-250"]
    assert [(b.offsets.start, b.offsets.end) for b in plan.cursor[0]] == [(100, 200), (200, 250)]


def test_a_range_after_uncommitted_offsets_is_refused():
    marks = Watermarks(0, 250)
    ensure_contiguous(OffsetRange("t", 0, 0, 100), None, marks)
    ensure_contiguous(OffsetRange("t", 0, 100, 200), 100, marks)
    ensure_contiguous(OffsetRange("t", 0, 0, 100), 100, marks)  # a re-run
    ensure_contiguous(OffsetRange("t", 0, 0, 40), 500, Watermarks(0, 40))  # topic recreated
    with pytest.raises(GapBeforeRange, match=r"offsets \[0, 100\) before batch \[100, 200\)"):
        ensure_contiguous(OffsetRange("t", 0, 100, 200), None, marks)
    with pytest.raises(GapBeforeRange):
        ensure_contiguous(OffsetRange("t", 0, 200, 250), 100, marks)


def test_a_cursor_loads_back_as_it_was_dumped():
    lanes = {0: [RequestedBatch(OffsetRange("t", 0, 0, 100), 1, 1.0, 2)], 1: []}
    loaded = load_cursor(dump_cursor("t", lanes, {0: 2, 1: 4}), "t")
    assert loaded.lanes == lanes and loaded.generations == {0: 2, 1: 4} and not loaded.repairs


def test_unreadable_cursor_is_replanned_and_says_why():
    lane = '{"generation": 1, "lane": [{"start": "a"}, {"start": 5, "end": 5}]}'
    for raw in (
        "{not json",
        "[1, 2]",
        '{"x": []}',
        '{"0": [{"start": 0, "end": 100}]}',  # not this version's form
        f'{{"version": 2, "topic": "t", "partitions": {{"0": {lane}, "1": 7}}}}',
        '{"version": 2, "topic": "other", "partitions": {}}',  # another topic's cursor
    ):
        loaded = load_cursor(raw, "t")
        assert loaded.repairs, raw
        assert all(b.offsets.size > 0 for lane in loaded.lanes.values() for b in lane)
    assert fresh_generation(None) == 0 and fresh_generation(4) == 5


def test_a_reset_to_an_empty_log_stores_no_empty_range_and_reads_what_arrives():
    """The bundled broker restarted (its log and the group's offsets lost) while the producer
    paused: the partition is idle under a new generation with an empty lane, and the first
    records that arrive are read from offset 0 under new run keys."""
    cursor = {0: [RequestedBatch(OffsetRange("t", 0, 0, 1000), 1, requested_at=1000.0)]}
    done = {"t:0:0-1000": (BatchStatus.SUCCEEDED, 1001.0)}
    empty = plan_batches("t", {0: None}, {0: Watermarks(0, 0)}, cursor, done, 1000, 1002.0)
    assert not empty.batches and empty.cursor == {0: []} and empty.generations == {0: 1}
    assert "offsets reset" in empty.waiting[0]
    stored = load_cursor(dump_cursor("t", empty.cursor, empty.generations), "t")
    idle = plan_batches(
        "t",
        {0: None},
        {0: Watermarks(0, 0)},
        stored.lanes,
        {},
        1000,
        1010.0,
        True,
        stored.generations,
    )
    assert not idle.batches and idle.generations == {0: 1}
    fed = plan_batches(
        "t",
        {0: None},
        {0: Watermarks(0, 1500)},
        idle.cursor,
        {},
        1000,
        1020.0,
        True,
        idle.generations,
    )
    assert [b.run_key for b in fed.batches] == ["t:0:0-1000~1"]


def test_offsets_reused_after_a_success_are_planned_afresh_under_new_run_keys():
    """A restarted broker (or a reset group) hands out offsets already ingested: the batch
    that succeeded is behind the group again. The partition is read again from the low
    watermark under a new generation, so the daemon never dedupes the run away."""
    cursor = {0: [RequestedBatch(OffsetRange("t", 0, 100, 200), 1, requested_at=1000.0)]}
    done = {"t:0:100-200": (BatchStatus.SUCCEEDED, 1001.0)}
    plan = plan_batches("t", {0: None}, {0: Watermarks(0, 30)}, cursor, done, 100, 1002.0)
    assert [(b.offsets.start, b.offsets.end, b.run_key) for b in plan.batches] == [
        (0, 30, "t:0:0-30~1")
    ]
    again = plan_batches("t", {0: None}, {0: Watermarks(0, 30)}, plan.cursor, {}, 100, 1003.0)
    assert not again.batches  # the new batch is in flight (its run not seen yet)
    # Once it succeeded, later ranges keep the new generation.
    caught_up = {"t:0:0-30~1": (BatchStatus.SUCCEEDED, 1004.0)}
    idle = plan_batches("t", {0: 30}, {0: Watermarks(0, 30)}, plan.cursor, caught_up, 100, 1005)
    more = plan_batches("t", {0: 30}, {0: Watermarks(0, 60)}, idle.cursor, caught_up, 100, 1006)
    assert [b.run_key for b in more.batches] == ["t:0:30-60~1"]


def test_committed_offset_beyond_the_log_end_is_reset_to_the_low_watermark():
    plan = plan_batches("t", {0: 500}, {0: Watermarks(0, 40)}, {}, {}, 100, now=1.0)
    assert [(b.offsets.start, b.offsets.end, b.generation) for b in plan.batches] == [(0, 40, 1)]
    assert "beyond the high watermark" in plan.waiting[0]


def test_a_requested_run_never_seen_is_retried_after_a_grace_period():
    cursor = {0: [RequestedBatch(OffsetRange("t", 0, 0, 100), 1, requested_at=1000.0)]}
    assert not plan_batches("t", {0: None}, MARKS, cursor, {}, 100, now=1030.0).batches
    later = plan_batches("t", {0: None}, MARKS, cursor, {}, 100, now=1061.0)
    assert [b.run_key for b in later.batches] == ["t:0:0-100#2"]
