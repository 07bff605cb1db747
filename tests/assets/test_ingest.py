"""Kafka → landing → DuckDB → commit, on the real broker, for both Kafka clients."""

import json

import duckdb
import polars as pl
import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from nids_assets.ingestion import batch_run_config
from nids_cli.driver import drain, execute_request
from nids_core.kafka.offsets import OffsetRange
from nids_core.stores.hot_schema import ensure_schema
from tests.support.deployment import FIXTURES, ROOT, make_resources
from tests.support.ingest import (
    committed,
    file_digests,
    hot_counts,
    latest_metadata,
    produce,
    replay,
    table_digest,
)

SAMPLES = [FIXTURES / "conn.log", FIXTURES / "conn.json.log"]
CHECKS = [
    AssetCheckKey(AssetKey(asset), name)
    for asset, name in (
        ("flow_batch", "flow_batch_accounting"),
        ("hot_flows", "hot_flows_accounting"),
        ("hot_flows", "hot_flows_schema"),
        ("hot_flows", "hot_flows_value_ranges"),
    )
]


def tick(defs, instance, name="kafka_ingest_sensor", cursor=None):
    sensor = defs.resolve_sensor_def(name)
    with build_sensor_context(
        instance=instance, cursor=cursor, resources=defs.resources, definitions=defs
    ) as ctx:
        return sensor(ctx)


def test_replayed_samples_are_ingested_once_and_offsets_committed(
    broker, topic, tmp_path, instance, make_defs, client_name
):
    stats = replay(broker, topic, SAMPLES)
    assert stats.sent == 410
    defs = make_defs(client=client_name)
    result = drain(defs, instance, {})
    assert result.failed_runs == 0 and result.ingest_runs == 1 and result.cold_runs >= 1
    assert hot_counts(tmp_path) == (410, 410, 0)
    assert committed(broker, topic) == 410
    md = latest_metadata(instance, "hot_flows")
    assert (md["records_read"], md["rows_stored"], md["duplicates"], md["quarantined"]) == (
        410,
        410,
        0,
        0,
    )
    cold = pl.read_parquet(tmp_path / "cold" / "flows" / "*" / "*.parquet", hive_partitioning=True)
    assert cold.height == 410 and cold["uid"].n_unique() == 410
    for check in CHECKS:
        record = instance.get_latest_asset_check_evaluation_record(check)
        assert record is not None and record.status.value == "SUCCEEDED", check
    # A second pass finds nothing new and changes nothing.
    again = drain(defs, instance, {})
    assert again.ingest_runs == 0 and hot_counts(tmp_path) == (410, 410, 0)


def test_failed_blocking_check_stops_the_commit(broker, topic, tmp_path, instance, make_defs):
    """A `flows` table that drifted from the contract fails the blocking schema check: the
    batch is stored (idempotently) but its offsets do not move, so it will be retried."""
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    ensure_schema(con)
    con.execute("ALTER TABLE flows ADD COLUMN surprise INTEGER")
    con.close()
    replay(broker, topic, SAMPLES[:1])
    result = drain(make_defs(), instance, {}, cold=False)
    assert result.failed_runs == 1
    schema = instance.get_latest_asset_check_evaluation_record(
        AssetCheckKey(AssetKey("hot_flows"), "hot_flows_schema")
    )
    assert schema.status.value == "FAILED"
    assert (
        "surprise" in schema.event.dagster_event.event_specific_data.metadata["differences"].value
    )
    assert committed(broker, topic) is None
    assert instance.get_latest_materialization_event(AssetKey("consumer_offsets")) is None


def test_malformed_records_go_to_quarantine_with_offset_and_reason(
    broker, topic, tmp_path, instance, make_defs, client_name
):
    good = (FIXTURES / "conn.json.log").read_bytes().splitlines()
    bad = [b"{not json", b"", json.dumps({"ts": 1.0, "proto": "tcp"}).encode(), b"x" * 70_000]
    produce(broker, topic, good[:10] + bad + good[10:20])
    result = drain(make_defs(client=client_name), instance, {})
    assert result.failed_runs == 0
    assert hot_counts(tmp_path) == (20, 20, 4)
    con = duckdb.connect(str(tmp_path / "hot.duckdb"), read_only=True)
    rows = con.execute(
        'SELECT "offset", error, octet_length(raw) FROM quarantine ORDER BY 1'
    ).fetchall()
    con.close()
    assert [r[0] for r in rows] == [10, 11, 12, 13]
    assert rows[0][1].startswith("invalid JSON")
    assert rows[1][1] == "empty message"
    assert "missing uid" in rows[2][1]
    assert rows[3][1].startswith("message too large") and rows[3][2] == 70_000
    assert committed(broker, topic) == 24


def test_crash_after_writes_before_commit_then_rerun_leaves_same_tables(
    broker, topic, tmp_path, instance, make_defs
):
    replay(broker, topic, SAMPLES)
    produce(broker, topic, [b"{broken"])
    defs = make_defs()
    result = tick(defs, instance)
    (request,) = result.run_requests
    # The run dies after the landing and DuckDB writes, before the offset commit.
    job = defs.resolve_job_def("ingest_job")
    partial = job.execute_in_process(
        run_config={
            "ops": {k: v for k, v in request.run_config["ops"].items() if k != "consumer_offsets"}
        },
        instance=instance,
        asset_selection=[AssetKey("flow_batch"), AssetKey("hot_flows")],
        tags={"dagster/run_key": "crashed"},
    )
    assert partial.success
    assert committed(broker, topic) is None
    before = (
        table_digest(tmp_path, "flows", "uid"),
        table_digest(tmp_path, "quarantine", "1, 2, 3"),
    )
    landing_before = file_digests(tmp_path / "cold" / "landing")
    # The sensor starts over from the committed offset: the same range is ingested again.
    rerun = drain(defs, instance, {})
    assert rerun.failed_runs == 0 and rerun.ingest_runs == 1
    assert hot_counts(tmp_path) == (410, 410, 1)
    after = (
        table_digest(tmp_path, "flows", "uid"),
        table_digest(tmp_path, "quarantine", "1, 2, 3"),
    )
    assert after == before
    assert file_digests(tmp_path / "cold" / "landing") == landing_before
    md = latest_metadata(instance, "hot_flows")
    assert (md["rows_stored"], md["duplicates"], md["quarantined"]) == (0, 410, 1)
    assert committed(broker, topic) == 411


def test_same_message_delivered_twice_is_stored_once(broker, topic, tmp_path, instance, make_defs):
    lines = (FIXTURES / "conn.json.log").read_bytes().splitlines()
    produce(broker, topic, [lines[0], lines[1], lines[0]])
    assert drain(make_defs(), instance, {}).failed_runs == 0
    produce(broker, topic, [lines[1]])  # and once more in a later batch
    assert drain(make_defs(), instance, {}).failed_runs == 0
    assert hot_counts(tmp_path) == (2, 2, 0)
    con = duckdb.connect(str(tmp_path / "hot.duckdb"), read_only=True)
    offsets = con.execute('SELECT uid, "offset" FROM flows ORDER BY "offset"').fetchall()
    con.close()
    assert [o for _, o in offsets] == [0, 1]  # the first delivery's provenance is kept
    md = latest_metadata(instance, "hot_flows")
    assert (md["records_read"], md["rows_stored"], md["duplicates"]) == (1, 0, 1)


def test_sensor_requests_exact_capped_ranges_then_skips(broker, topic, tmp_path, instance):
    from nids_jobs.definitions import build_definitions

    lines = (FIXTURES / "conn.json.log").read_bytes().splitlines()
    produce(broker, topic, lines)  # 50 records
    defs = build_definitions(make_resources(broker, topic, tmp_path, max_batch_records=20))
    first = tick(defs, instance)
    assert isinstance(first, SensorResult)
    assert first.run_requests == [
        RunRequest(
            run_key=f"{topic}:0:0-20",
            run_config=batch_run_config(OffsetRange(topic, 0, 0, 20)),
            tags={
                "nids/topic": topic,
                "nids/partition": "0",
                "nids/offset_range": "0-20",
                "nids/attempt": "1",
                "nids/generation": "0",
                "nids/ingest_lane": f"{topic}-0",
            },
        )
    ]
    # Until its run is seen, nothing else is requested for the partition.
    waiting = tick(defs, instance, cursor=first.cursor)
    assert not waiting.run_requests and "in flight" in waiting.skip_reason.skip_message
    assert execute_request(defs, instance, "ingest_job", first.run_requests[0])
    second = tick(defs, instance, cursor=first.cursor)
    assert [r.run_key for r in second.run_requests] == [f"{topic}:0:20-40"]
    assert execute_request(defs, instance, "ingest_job", second.run_requests[0])
    third = tick(defs, instance, cursor=second.cursor)
    assert [r.run_key for r in third.run_requests] == [f"{topic}:0:40-50"]
    assert execute_request(defs, instance, "ingest_job", third.run_requests[0])
    idle = tick(defs, instance, cursor=third.cursor)
    assert not idle.run_requests
    assert (
        idle.skip_reason.skip_message
        == "partition 0: no new records (committed 50, high watermark 50)"
    )
    assert hot_counts(tmp_path) == (50, 50, 0)


def _first_range_in_flight(broker, topic, tmp_path, instance):
    """50 records in the topic, ranges of 20: the sensor's first request, its run STARTED."""
    from dagster import DagsterRunStatus
    from dagster._core.test_utils import create_run_for_test

    from nids_jobs.definitions import build_definitions

    produce(broker, topic, (FIXTURES / "conn.json.log").read_bytes().splitlines())  # 50
    defs = build_definitions(make_resources(broker, topic, tmp_path, max_batch_records=20))
    first = tick(defs, instance)
    create_run_for_test(
        instance,
        job_name="ingest_job",
        status=DagsterRunStatus.STARTED,
        tags={"dagster/run_key": first.run_requests[0].run_key},
    )
    return defs, first


def test_next_range_is_queued_behind_a_run_in_flight(broker, topic, tmp_path, instance):
    defs, first = _first_range_in_flight(broker, topic, tmp_path, instance)
    queued = tick(defs, instance, cursor=first.cursor)
    assert [r.run_key for r in queued.run_requests] == [f"{topic}:0:20-40"]
    assert queued.run_requests[0].tags["nids/ingest_lane"] == f"{topic}-0"
    # One range queued behind the run at most.
    assert not tick(defs, instance, cursor=queued.cursor).run_requests


def test_without_the_per_partition_limit_one_range_is_requested_at_a_time(broker, topic, tmp_path):
    """An instance whose run queue would start a queued range beside the run ahead of it
    gets one range per partition at a time; the embedded default has the limit."""
    from dagster import DagsterInstance

    from nids_cli.instance import ensure_instance_yaml
    from nids_sensors.kafka_sensor import lanes_serialised

    embedded = tmp_path / "embedded"
    ensure_instance_yaml(embedded)
    with DagsterInstance.from_config(str(embedded)) as with_limit:
        assert lanes_serialised(with_limit)
    home = tmp_path / "no_limit"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with DagsterInstance.from_config(str(home)) as plain:
        assert not lanes_serialised(plain)
        defs, first = _first_range_in_flight(broker, topic, tmp_path, plain)
        waiting = tick(defs, plain, cursor=first.cursor)
        assert not waiting.run_requests and "in flight" in waiting.skip_reason.skip_message


def test_a_range_run_before_the_one_ahead_of_it_lands_nothing_and_follows(
    broker, topic, tmp_path, instance
):
    """The run queue starts a queued range after the run ahead of it; should that one fail
    (or the instance lack the per-partition limit), the queued range must not land or
    commit past the offsets before it."""
    from nids_jobs.definitions import build_definitions

    produce(broker, topic, (FIXTURES / "conn.json.log").read_bytes().splitlines())  # 50
    defs = build_definitions(make_resources(broker, topic, tmp_path, max_batch_records=20))

    def request(start, end, attempt=1):
        key = OffsetRange(topic, 0, start, end).run_key(attempt, 0)
        config = batch_run_config(OffsetRange(topic, 0, start, end))
        return RunRequest(run_key=key, run_config=config)

    assert not execute_request(defs, instance, "ingest_job", request(20, 40))
    failure = next(
        e
        for e in instance.all_logs(instance.get_runs(limit=1)[0].run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "STEP_FAILURE"
    )
    why = failure.dagster_event.event_specific_data.user_failure_data.description
    assert "offsets [0, 20) before batch [20, 40) are not committed yet" in why
    assert committed(broker, topic) is None
    assert not list((tmp_path / "cold").rglob("*.parquet"))
    assert execute_request(defs, instance, "ingest_job", request(0, 20))
    assert execute_request(defs, instance, "ingest_job", request(20, 40, attempt=2))
    assert committed(broker, topic) == 40
    assert hot_counts(tmp_path) == (40, 40, 0)


def test_sensor_skips_with_clear_reason_when_broker_is_down(tmp_path, instance):
    from nids_devkit.broker import start_broker
    from nids_jobs.definitions import build_definitions

    down = start_broker()
    down.stop()
    defs = build_definitions(make_resources(down, "zeek.conn", tmp_path))
    result = tick(
        defs, instance, cursor='{"0": {"start": 5, "end": 9, "attempt": 1, "requested_at": 1.0}}'
    )
    assert isinstance(result, SkipReason)
    assert result.skip_message.startswith(f"Kafka unreachable at {down.bootstrap_servers}")
    assert not (tmp_path / "hot.duckdb").exists()


@pytest.mark.slow
def test_unreachable_s3_fails_the_run_keeps_offsets_and_a_later_run_completes(
    broker, topic, tmp_path, instance, s3_endpoint, s3_bucket
):
    from nids_devkit.broker import free_port
    from nids_jobs.definitions import build_definitions
    from nids_resources.stores import ColdStoreResource

    replay(broker, topic, SAMPLES)
    dead = make_resources(broker, topic, tmp_path, cold_url=f"s3://{s3_bucket}/nids")
    dead["cold_store"] = ColdStoreResource(
        url=f"s3://{s3_bucket}/nids", s3_endpoint_url=f"http://127.0.0.1:{free_port()}"
    )
    failed = drain(build_definitions(dead), instance, {})
    assert failed.failed_runs == 1
    assert committed(broker, topic) is None
    assert not (tmp_path / "hot.duckdb").exists()  # the run stopped before the hot write
    live = make_resources(broker, topic, tmp_path)
    live["cold_store"] = ColdStoreResource(
        url=f"s3://{s3_bucket}/nids", s3_endpoint_url=s3_endpoint
    )
    done = drain(build_definitions(live), instance, {})
    assert done.failed_runs == 0 and done.ingest_runs == 1 and done.cold_runs >= 1
    assert committed(broker, topic) == 410
    assert hot_counts(tmp_path) == (410, 410, 0)
    store = live["cold_store"].store()
    days = store.landing_days()
    assert sum(store.read_cold_day(d).height for d in days) == 410


def test_cold_backfill_run_twice_gives_identical_files(
    broker, topic, tmp_path, instance, make_defs
):
    replay(broker, topic, SAMPLES)
    defs = make_defs()
    assert drain(defs, instance, {}).failed_runs == 0
    store = defs.resources["cold_store"].store()
    days = store.landing_days()
    assert days == ["2013-09-15", "2019-12-03"]
    job = defs.resolve_job_def("cold_flows_job")
    digests = []
    for _ in range(2):
        for day in days:
            assert job.execute_in_process(instance=instance, partition_key=day).success
        digests.append(file_digests(tmp_path / "cold" / "flows"))
    assert digests[0] == digests[1] and len(digests[0]) == 2
    assert sum(store.read_cold_day(d).height for d in days) == 410


def test_new_batches_are_appended_to_cold_days_and_a_closed_day_is_compacted(
    broker, topic, tmp_path, instance, monkeypatch
):
    """A batch is appended to its cold day as a file without reading the rest of the day
    (appending works with the day's compacted file unreadable); the sensor compacts a
    closed day once no batch has reached it for NIDS_COLD_COMPACT_AFTER_S; a reader sees the
    same rows before and after."""
    from nids_cli.driver import tick_sensor
    from nids_jobs.definitions import build_definitions

    lines = (FIXTURES / "conn.json.log").read_bytes().splitlines()
    defs = build_definitions(make_resources(broker, topic, tmp_path))
    store = defs.resources["cold_store"].store()
    cursors: dict = {}
    produce(broker, topic, lines[:30])
    result = drain(defs, instance, cursors, serve=False)
    assert result.failed_runs == 0 and result.cold_runs == 1
    (day,) = store.cold_days()
    assert len(store.appended_batches(day)) == 1 and not store.fs.exists(store.cold_file(day))
    appended = store.read_cold_day(day)
    assert appended.height == appended["uid"].n_unique() == 30
    assert latest_metadata(instance, "cold_flows")["mode"] == "append"
    # The day closed long ago, but the default waits an hour after its last append.
    requests, skip, cursors["cold_flows_sensor"] = tick_sensor(
        defs, instance, "cold_flows_sensor", cursors
    )
    assert requests == [] and skip == "no new landed batches"

    monkeypatch.setenv("NIDS_COLD_COMPACT_AFTER_S", "0")
    defs = build_definitions(make_resources(broker, topic, tmp_path))
    job = defs.resolve_job_def("cold_flows_job")

    def compact() -> None:
        requests, _, cursors["cold_flows_sensor"] = tick_sensor(
            defs, instance, "cold_flows_sensor", cursors
        )
        assert [(r.partition_key, r.run_config) for r in requests] == [(day, {})]
        assert execute_request(defs, instance, job.name, requests[0])
        assert store.appended_batches(day) == [] and store.fs.exists(store.cold_file(day))

    compact()
    assert store.read_cold_day(day).equals(appended)
    assert latest_metadata(instance, "cold_flows")["mode"] == "compaction"

    store.fs.pipe_file(store.cold_file(day), b"not parquet")  # an append must not read it
    produce(broker, topic, lines[30:])
    result = drain(defs, instance, cursors, serve=False)
    assert result.failed_runs == 0 and result.cold_runs == 1
    assert len(store.appended_batches(day)) == 1
    compact()  # rebuilt from the landing zone
    whole = store.read_cold_day(day)
    assert whole.height == whole["uid"].n_unique() == len(lines)
    # The compacted cold day holds exactly the hot table's rows of that day, value for value.
    with duckdb.connect(str(tmp_path / "hot.duckdb"), read_only=True) as con:
        hot = con.execute(
            "SELECT * FROM flows WHERE CAST(ts AT TIME ZONE 'UTC' AS DATE) = ?", [day]
        ).pl()
    hot = hot.with_columns(pl.col("ts").dt.convert_time_zone("UTC"))  # DuckDB says Etc/UTC
    shared = [c for c in whole.columns if c in hot.columns]
    assert len(shared) >= 20, shared
    cold_rows, hot_rows = whole.select(shared).sort("uid"), hot.select(shared).sort("uid")
    differing = [c for c in shared if not cold_rows[c].equals(hot_rows[c])]
    assert not differing, {c: (cold_rows[c].dtype, hot_rows[c].dtype) for c in differing}


@pytest.mark.slow
def test_two_ingest_runs_at_once_share_duckdb_without_lock_errors(broker, tmp_path):
    import subprocess
    import sys
    import uuid

    from dagster import DagsterInstance

    from nids_devkit.broker import create_topic
    from nids_jobs.definitions import build_definitions

    topic = f"zeek.conn.two.{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap_servers, topic, 2)
    replay(broker, topic, SAMPLES)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
    )
    instance = DagsterInstance.from_config(str(home))
    defs = build_definitions(make_resources(broker, topic, tmp_path))
    requests = tick(defs, instance).run_requests
    assert sorted(r.tags["nids/partition"] for r in requests) == ["0", "1"]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.run_ingest_request",
                json.dumps(
                    {
                        "port": broker.port,
                        "topic": topic,
                        "tmp": str(tmp_path),
                        "dagster_home": str(home),
                        "run_key": r.run_key,
                        "run_config": r.run_config,
                    }
                ),
            ],
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in requests
    ]
    outputs = [p.communicate(timeout=240)[0].decode(errors="replace") for p in procs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "lock" not in out.lower(), out[-3000:]
    assert hot_counts(tmp_path) == (410, 410, 0)
    assert committed(broker, topic, 0) + committed(broker, topic, 1) == 410


def test_days_landed_before_the_first_partition_are_kept_and_the_sensor_says_what_to_do(
    broker, topic, tmp_path, instance, monkeypatch
):
    from datetime import UTC, datetime

    from nids_cli.driver import tick_sensor
    from nids_core.stores.cold import ColdStore
    from nids_jobs.definitions import build_definitions
    from tests.support.deployment import iot23

    stats = replay(broker, topic, [iot23("CTU-Honeypot-Capture-7-1-labeled.csv.gz")])
    # A code location loaded before these (2019) flows landed, starting today.
    monkeypatch.setenv("NIDS_COLD_START_DATE", datetime.now(UTC).date().isoformat())
    defs = build_definitions(make_resources(broker, topic, tmp_path))
    assert drain(defs, instance, {}, cold=False).failed_runs == 0
    store = ColdStore(str(tmp_path / "cold"))
    landed = store.landing_days()
    assert landed and all(day < "2020" for day in landed)
    requests, skip, _ = tick_sensor(defs, instance, "cold_flows_sensor", {})
    assert requests == []
    assert skip == (
        f"landed days outside the cold partitions: {', '.join(landed)}; reload the code "
        "location (its partitions start at the first landed day) or set NIDS_COLD_START_DATE, "
        "then backfill cold_flows for them"
    )
    # Nothing was lost: every flow is in the hot table and in the landing zone.
    assert hot_counts(tmp_path)[0] == stats.sent
    # Doing what it says: reloaded, the partitions start at the first landed day and a
    # backfill of those days builds them from the landing zone.
    monkeypatch.delenv("NIDS_COLD_START_DATE")
    reloaded = build_definitions(make_resources(broker, topic, tmp_path))
    job = reloaded.resolve_job_def("cold_flows_job")
    assert job.partitions_def.get_first_partition_key() == landed[0]
    for day in landed:
        assert job.execute_in_process(instance=instance, partition_key=day).success
    assert sum(store.read_cold_day(d).height for d in landed) == stats.sent
