"""Hostile records and reused offsets, on the real broker, DuckDB and landing zone: nothing
halts a partition, nothing landed is replaced, and every record is accounted for."""

import json

import duckdb
import polars as pl
import pytest

from nids_cli.driver import drain
from nids_core.stores.cold import ColdStore
from nids_core.stores.lifecycle import remove_uids_stored_twice
from nids_devkit.broker import create_topic, free_port, start_broker
from nids_jobs.definitions import build_definitions
from nids_resources.stores import ColdStoreResource
from tests.support.deployment import FIXTURES, make_resources
from tests.support.ingest import GOOD, committed, hot_counts, latest_metadata, produce, rec

# Each of these made the parser raise, so the run failed and the partition stopped for good,
# or was accepted although it is not a plausible Zeek record.
HOSTILE: list[tuple[bytes, str]] = [
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, "invalid JSON: nested too deeply"),
    (b"[" * 20000 + b"]" * 20000, "invalid JSON: nested too deeply"),
    (rec()[:-1] + b', "x": ' + b"[" * 3000 + b"]" * 3000 + b"}", "nested too deeply"),
    (b'{"conn": "abc"}', "`conn` wrapper holds a JSON string, not an object"),
    (b'{"conn": ""}', "`conn` wrapper holds a JSON string, not an object"),
    (b'{"conn": 7}', "`conn` wrapper holds a JSON number, not an object"),
    (b'{"conn": [1]}', "`conn` wrapper holds a JSON array, not an object"),
    (rec(uid="Cfar", ts="+10000-01-01T00:00:00"), "ts outside the plausible window"),
    (rec(uid="C2286", ts=9999999999), "ts outside the plausible window: 9999999999"),
    (rec(uid="C1970", ts=1.0), "ts outside the plausible window: 1 not in"),
    (rec(uid="Cnan", duration="NaN"), "non-finite duration: NaN"),
    (rec(uid="Cinf", duration="inf"), "non-finite duration: inf"),
    (rec(uid="Ctok", duration=...)[:-1] + b', "duration": NaN}', "non-finite number NaN"),
    (rec(uid="Cbig", duration=...)[:-1] + b', "duration": 1e999}', "out of range: 1e999"),
    (b"\xef\xbb\xbf" + rec(uid="Cbom"), "starts with a UTF-8 byte-order mark"),
    (rec(uid="Cdup")[:-1] + b', "uid": "Cforged"}', "duplicate JSON key 'uid'"),
    (rec(uid="Caddr", **{"id.orig_h": [1, 2]}), "wrong type for id.orig_h"),
]


def _good(i: int) -> bytes:
    return rec(uid=f"Cgood{i}", ts=GOOD["ts"] + i)


@pytest.mark.parametrize("client", ["kafka-python", "confluent"])
def test_hostile_records_are_quarantined_and_the_partition_moves_on(
    broker, topic, tmp_path, instance, make_defs, client
):
    values: list[bytes] = []
    bad_at: dict[int, str] = {}
    for i, (value, reason) in enumerate(HOSTILE):
        values.append(_good(i))
        bad_at[len(values)] = reason
        values.append(value)
    values += [_good(100), _good(100)]  # and a duplicate delivery
    produce(broker, topic, values)
    result = drain(make_defs(client=client), instance, {}, cold=False, serve=False)
    assert result.failed_runs == 0 and result.ingest_runs == 1
    stored, _, quarantined = hot_counts(tmp_path)
    assert (stored, quarantined) == (len(HOSTILE) + 1, len(HOSTILE))
    md = latest_metadata(instance, "hot_flows")
    assert md["records_read"] == len(values)
    assert md["records_read"] == md["rows_stored"] + md["quarantined"] + md["duplicates"]
    assert md["duplicates"] == 1
    assert committed(broker, topic) == len(values)
    con = duckdb.connect(str(tmp_path / "hot.duckdb"), read_only=True)
    rows = dict(con.execute('SELECT "offset", error FROM quarantine').fetchall())
    raw = dict(con.execute('SELECT "offset", raw FROM quarantine').fetchall())
    con.close()
    assert set(rows) == set(bad_at)
    for offset, reason in bad_at.items():
        assert reason in rows[offset], (offset, rows[offset])
        assert raw[offset] == values[offset]


@pytest.mark.parametrize("store_kind", ["local", "s3"])
def test_reused_offsets_land_beside_earlier_records_and_cold_stays_exact(
    tmp_path, instance, store_kind, request
):
    """The bundled broker keeps its log in memory: restarted, it hands out offsets 0.. again
    for new records. Those must not replace what was landed under the same offsets."""
    lines = (FIXTURES / "conn.json.log").read_bytes().splitlines()
    cold_url, store_options = None, {}
    if store_kind == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        cold_url = f"s3://{request.getfixturevalue('s3_bucket')}/nids"
        store_options = {"endpoint_url": endpoint, "skip_instance_cache": True}
    port = free_port()
    topic = "zeek.conn"

    def incarnation(records: list[bytes]) -> None:
        with start_broker(port) as b:
            create_topic(b.bootstrap_servers, topic, 1)
            produce(b, topic, records)
            resources = make_resources(b, topic, tmp_path, cold_url=cold_url)
            if cold_url:
                resources["cold_store"] = ColdStoreResource(
                    url=cold_url, s3_endpoint_url=store_options["endpoint_url"]
                )
            defs = build_definitions(resources)
            result = drain(defs, instance, cursors, cold=True, serve=False)
            assert result.failed_runs == 0 and result.ingest_runs == 1
            assert committed(b, topic) == len(records)

    cursors: dict = {}
    incarnation(lines[:25])
    incarnation(lines[25:])  # same offsets [0, 25), other records
    store = ColdStore(cold_url or str(tmp_path / "cold"), store_options)
    assert hot_counts(tmp_path) == (50, 50, 0)
    (day,) = store.landing_days()
    assert len(store.landing_files(day)) == 2  # one per incarnation, side by side
    assert store.read_cold_day(day)["uid"].n_unique() == store.read_cold_day(day).height == 50
    expected = {json.loads(line)["uid"] for line in lines}
    assert set(store.read_cold_day(day)["uid"]) == expected
    # The group reset on the same broker gives the same records again: nothing changes.
    incarnation(lines[25:])
    assert len(store.landing_files(day)) == 2 and hot_counts(tmp_path) == (50, 50, 0)
    # Compacted (on S3 too): the same 50 flows, in one file.
    appended = store.read_cold_day(day)
    assert store.rewrite_cold_day(day) == 50 and store.appended_batches(day) == []
    assert store.read_cold_day(day).equals(appended)


def test_a_failed_landing_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A rename that fails (disk full, quota, a vanished mount: not causable here, so the
    rename is made to fail) must not leave the written temporary file behind."""
    import errno

    store = ColdStore(str(tmp_path / "cold"))

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.fs, "mv", full)
    with pytest.raises(OSError, match="No space left"):
        store.write_frame("training/set.parquet", pl.DataFrame({"a": [1]}))
    assert list((tmp_path / "cold" / "training").iterdir()) == []


def test_a_flow_delivered_again_with_a_ts_on_another_day_is_stored_once_in_cold(
    broker, topic, tmp_path, instance, make_defs
):
    """The cold store keeps the flow once (the first delivery's copy) instead of on both
    days: read while the batches are appended to their days, and once they are compacted. The hot table finds copies of a record
    by uid among the rows of the same ts (what keeps a batch's cost apart from the table's
    size), so it holds the re-stamped copy until the hourly lifecycle pass, which keeps the
    first delivery's."""
    first = [_good(i) for i in range(5)]
    moved = rec(uid="Cgood2", ts=GOOD["ts"] + 86_400)  # the same flow, a day later
    produce(broker, topic, first)
    defs = make_defs()
    cursors: dict = {}
    assert drain(defs, instance, cursors, serve=False).failed_runs == 0
    produce(broker, topic, [moved, _good(9)])
    result = drain(defs, instance, cursors, serve=False)
    assert result.failed_runs == 0 and result.cold_runs == 1
    store = defs.resources["cold_store"].store()
    days = store.cold_days()
    assert len(days) == 2 and all(store.appended_batches(d) for d in days)
    # Appended, not yet compacted: read through the compaction's rules.
    cold = pl.concat([store.read_cold_day(d) for d in days])
    assert cold.height == cold["uid"].n_unique() == 6
    kept = cold.filter(pl.col("uid") == "Cgood2")
    assert kept["offset"].to_list() == [2]  # the first delivery's copy, on its own day
    assert hot_counts(tmp_path)[:2] == (7, 6)
    with duckdb.connect(str(tmp_path / "hot.duckdb")) as con:
        assert remove_uids_stored_twice(con) == (1, 0)
        assert con.execute("SELECT \"offset\" FROM flows WHERE uid = 'Cgood2'").fetchall() == [(2,)]
    assert hot_counts(tmp_path)[:2] == (6, 6)
    # Compacted: the same rows, in one file per day, the appended files gone.
    assert store.rewrite_cold_days(days) == {days[0]: 6, days[1]: 0}
    assert pl.concat([store.read_cold_day(d) for d in days]).equals(cold)
    assert not any(store.appended_batches(d) for d in days)
    # Rebuilding the same range again gives the same files.
    from tests.support.ingest import file_digests

    before = file_digests(tmp_path / "cold" / "flows")
    assert store.rewrite_cold_days(days) == {days[0]: 6, days[1]: 0}
    assert file_digests(tmp_path / "cold" / "flows") == before
    # Whatever the grouping: the later day rebuilt alone still defers to its neighbour.
    assert store.rewrite_cold_day(days[1]) == 0
    assert file_digests(tmp_path / "cold" / "flows") == before


def test_a_committed_offset_beyond_the_log_end_is_reset_and_nothing_is_skipped(
    broker, topic, tmp_path, instance, make_defs
):
    """A recreated topic, with the group's offsets kept from the old one: the committed
    offset points past the new log's end. Kafka consumers reset it; so does ingestion, and
    every record of the new log is ingested rather than waited past."""
    from nids_core.kafka.log import KafkaSettings, open_client

    values = [_good(i) for i in range(30)]
    produce(broker, topic, values)
    with open_client(
        "kafka-python", KafkaSettings(broker.bootstrap_servers, f"nids-etl-{topic}")
    ) as c:
        c.commit(topic, 0, 1000)
    result = drain(make_defs(), instance, {}, cold=False, serve=False)
    assert result.failed_runs == 0 and result.ingest_runs == 1
    assert hot_counts(tmp_path) == (30, 30, 0)
    assert committed(broker, topic) == 30  # moved back onto the new log


def test_appending_a_batch_that_never_landed_fails_naming_it_and_writes_nothing(tmp_path):
    """An append run for a batch whose manifest is missing (a landing zone restored without
    it, a hand-written run config) fails with the batch and the file it looked for, and
    leaves the cold day untouched."""
    store = ColdStore(str(tmp_path / "cold"))
    with pytest.raises(FileNotFoundError, match=r"batch zeek\.conn-p00000-x has not landed: no "):
        store.append_batches(["zeek.conn-p00000-x"])
    assert store.cold_days() == []
