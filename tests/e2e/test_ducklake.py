"""The hot store on DuckLake under real concurrency: a PostgreSQL catalog (127.0.0.1:5432),
data on moto's S3, and several writer processes at once."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg2
import pytest

from nids_core.stores.hot_backend import DuckLakeStore
from nids_core.stores.lake import LakeLocation, S3Access, close_lakes
from tests.support.deployment import ROOT, iot23

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
pytestmark = pytest.mark.slow
CAPTURE = "CTU-Malware-Capture-8-1-labeled.csv.gz"  # 10,403 flows, one uid each
WRITER = [sys.executable, "-m", "tests.support.lake_writer"]


@pytest.fixture
def lake(s3_endpoint, s3_bucket):
    name = f"nids_lake_{uuid.uuid4().hex[:8]}"
    con = psycopg2.connect(dbname="postgres", **PG)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    location = LakeLocation(
        catalog=f"host={PG['host']} port={PG['port']} user={PG['user']} dbname={name}",
        data_path=f"s3://{s3_bucket}/hot",
        s3=S3Access(s3_endpoint, "testing", "testing", "us-east-1"),
    )
    yield location
    close_lakes()
    with con.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    con.close()


def writer_args(location, partition, first, rows, batch, start_at, topic="zeek.conn"):
    return json.dumps(
        {
            "catalog": location.catalog,
            "data_path": location.data_path,
            "s3_endpoint": location.s3.endpoint_url,
            "capture": str(iot23(CAPTURE)),
            "topic": topic,
            "partition": partition,
            "first": first,
            "rows": rows,
            "batch": batch,
            "start_at": start_at,
        }
    )


def start_writer(args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*WRITER, args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


def test_a_fresh_catalog_raced_by_four_processes_is_created_once(lake):
    code = (
        "import sys, time; from nids_core.stores.hot_backend import DuckLakeStore; "
        "from nids_core.stores.lake import LakeLocation, S3Access; "
        f"loc = LakeLocation({lake.catalog!r}, {lake.data_path!r}, "
        f"S3Access({lake.s3.endpoint_url!r}, 'testing', 'testing', 'us-east-1')); "
        "time.sleep(max(0, float(sys.argv[1]) - time.time()))\n"
        "store = DuckLakeStore(loc)\n"
        "with store.connect() as con: print(con.execute('SELECT count(*) FROM flows').fetchone()[0])"
    )
    start_at = str(time.time() + 3)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, start_at],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "0"
    con = psycopg2.connect(lake.catalog)
    with con.cursor() as cur:
        cur.execute("SELECT table_name, count(*) FROM ducklake_table GROUP BY 1")
        tables = dict(cur.fetchall())
    con.close()
    assert set(tables) >= {"flows", "predictions", "quarantine", "analyst_alerts"}
    assert set(tables.values()) == {1}


def _small_model():
    import polars as pl

    from nids_core.model.splits import time_split
    from nids_core.model.training import TrainConfig, train_served
    from nids_core.serving.model_cache import ServedModel
    from nids_core.zeek.files import read_zeek_file

    flows = read_zeek_file(iot23("CTU-Honeypot-Capture-7-1-labeled.csv.gz")).flows
    split = time_split(flows.filter(pl.col("label").is_not_null()))
    result = train_served(
        split.filter(pl.col("split") == "train"),
        split.filter(pl.col("split") == "validation"),
        TrainConfig(max_epochs=5, patience=2, hidden=16),
    )
    return ServedModel("lake-test", result.scorer, "test")


def test_concurrent_writers_store_each_uid_once_and_readers_never_wait(lake):
    """Four partitions written at once, 2,000 of their records delivered to two partitions
    (the same uid and ts in partitions 1 and 2, both writers starting with them); a reader
    counts and a scoring pass runs throughout. The copy of the lower partition wins, every
    uid is stored once and predicted once."""
    from nids_core.serving.scoring import score_unscored

    model = _small_model()
    start_at = time.time() + 4
    # (partition, first row, rows): rows 6000..7999 are in partitions 1 and 2.
    shares = [(0, 0, 4000), (1, 6000, 2000), (2, 6000, 4403), (3, 4000, 2000)]
    procs = [
        start_writer(writer_args(lake, part, first, rows, 500, start_at))
        for part, first, rows in shares
    ]
    store = DuckLakeStore(lake)
    seen, slowest = [], 0.0
    scored_during = 0
    with store.connect(read_only=True) as reader, store.connect() as scoring:
        while any(p.poll() is None for p in procs):
            t0 = time.perf_counter()
            seen.append(reader.execute("SELECT count(*) FROM flows").fetchone()[0])
            slowest = max(slowest, time.perf_counter() - t0)
            counts = store.retrying(lambda: score_unscored(scoring, model))
            scored_during += counts.inserted
            time.sleep(0.2)
    totals = [finish(p) for p in procs]
    with store.connect() as scoring:
        store.retrying(lambda: score_unscored(scoring, model))
        predicted, predicted_uids = scoring.execute(
            "SELECT count(*), count(DISTINCT uid) FROM predictions"
        ).fetchone()
    assert scored_during > 0  # scoring ran while the writers wrote
    assert predicted == predicted_uids == 10403
    with store.connect() as con:
        stored, uids = con.execute("SELECT count(*), count(DISTINCT uid) FROM flows").fetchone()
        partitions = dict(
            con.execute('SELECT "partition", count(*) FROM flows GROUP BY 1 ORDER BY 1').fetchall()
        )
    assert stored == uids == 10403
    # Every record received was stored once or counted as already there.
    received = sum(t["received"] for t in totals)
    assert received == 12403
    assert sum(t["inserted"] for t in totals) == 10403
    assert sum(t["already_present"] for t in totals) == 2000
    # Whichever committed first, the overlap ends in partition 1 (the lower provenance).
    assert partitions == {0: 4000, 1: 2000, 2: 2403, 3: 2000}
    # The reader saw the table grow while the writers ran, and never waited on them.
    assert seen == sorted(seen) and len(set(seen)) > 1, seen
    assert slowest < 5.0, slowest


def test_a_writer_killed_mid_commit_leaves_whole_batches_and_a_rerun_completes(lake):
    store = DuckLakeStore(lake)
    args = writer_args(lake, 0, 0, 10403, 1000, 0)
    proc = start_writer(args)
    # Kill it while it commits its batches: after the first commit, before the last.
    first = json.loads(proc.stdout.readline())
    assert first == {"committed": 1}
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with store.connect() as con:
        per_batch = con.execute(
            'SELECT "offset" // 1000 AS b, count(*) FROM flows GROUP BY 1 ORDER BY 1'
        ).fetchall()
    # Nothing half-visible: each batch is all there or not at all.
    assert per_batch and all(n == min(1000, 10403 - b * 1000) for b, n in per_batch), per_batch
    assert len(per_batch) < 11  # the kill came before the end
    # Its retry (the same batches again) completes the table, each uid once.
    totals = finish(start_writer(args))
    assert totals["inserted"] == 10403 - sum(n for _, n in per_batch)
    with store.connect() as con:
        assert con.execute("SELECT count(*), count(DISTINCT uid) FROM flows").fetchone() == (
            10403,
            10403,
        )
    # The killed writer held no key lock past its death.
    con = psycopg2.connect(lake.catalog)
    with con.cursor() as cur:
        cur.execute("SELECT count(*) FROM nids_key_locks")
        assert cur.fetchone()[0] == 0
    con.close()


def test_ingest_runs_of_two_partitions_at_once_on_the_lake_lose_and_double_nothing(
    broker, lake, tmp_path
):
    """The ingest job in two processes at once, one per partition, on the DuckLake: 300
    records sent to both partitions and 2 malformed ones; produced = stored + quarantined
    + duplicates, one row per uid, every offset committed."""
    from dagster import AssetKey, DagsterInstance, RunRequest
    from kafka import KafkaProducer

    from nids_assets.ingestion import batch_run_config
    from nids_core.kafka.offsets import OffsetRange
    from nids_core.zeek.files import read_zeek_file
    from nids_devkit.broker import create_topic
    from nids_devkit.replay import to_zeek_json
    from nids_resources.stores import HotStoreResource

    topic = f"zeek.conn.lake.{uuid.uuid4().hex[:6]}"
    create_topic(broker.bootstrap_servers, topic, 2)
    lines = to_zeek_json(read_zeek_file(iot23(CAPTURE)).flows)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)
    sent = {0: 0, 1: 0}
    for i, line in enumerate(lines):
        for part in {i % 2, *((1 - i % 2,) if i < 300 else ())}:
            producer.send(topic, value=line, partition=part)
            sent[part] += 1
    for bad in (b"{not json", b'{"uid": "x"}'):
        producer.send(topic, value=bad, partition=1)
        sent[1] += 1
    producer.flush()
    producer.close()
    hot = {
        "store_kind": "ducklake",
        "ducklake_catalog": lake.catalog,
        "ducklake_data_path": lake.data_path,
        "s3_endpoint_url": lake.s3.endpoint_url,
        "aws_region": "us-east-1",
    }
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    DagsterInstance.from_config(str(home)).dispose()  # its tables, before two processes
    procs = []
    for part in (0, 1):
        offsets = OffsetRange(topic, part, 0, sent[part])
        request = RunRequest(run_key=offsets.run_key(), run_config=batch_run_config(offsets))
        args = {
            "port": broker.port,
            "topic": topic,
            "tmp": str(tmp_path),
            "dagster_home": str(home),
            "run_key": request.run_key,
            "run_config": request.run_config,
            "hot_store": hot,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.support.run_ingest_request", json.dumps(args)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for p in procs:
        out = p.communicate(timeout=240)[0]
        assert p.returncode == 0, out[-3000:]
    with HotStoreResource(**hot).backend().connect(read_only=True) as con:
        stored, uids = con.execute("SELECT count(*), count(DISTINCT uid) FROM flows").fetchone()
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.fetch_materializations(AssetKey("hot_flows"), limit=10).records
        duplicates = sum(r.asset_materialization.metadata["duplicates"].value for r in records)
    assert (stored, uids, quarantined) == (10403, 10403, 2)
    assert len(records) == 2 and duplicates == 300
    assert sum(sent.values()) == stored + quarantined + duplicates


def test_nids_hot_init_creates_the_lake_once_and_a_bad_setting_is_named(lake):
    nids = str(Path(sys.executable).parent / "nids")
    env = {
        **os.environ,
        "NIDS_HOT_STORE": "ducklake",
        "NIDS_DUCKLAKE_CATALOG": lake.catalog,
        "NIDS_DUCKLAKE_DATA_PATH": lake.data_path,
        "NIDS_S3_ENDPOINT_URL": lake.s3.endpoint_url,
        "AWS_REGION": "us-east-1",
    }
    for _ in range(2):  # the second run finds it made
        out = subprocess.run([nids, "hot", "init"], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "hot store ready: DuckLake" in out.stdout and "analyst_alerts: 0 rows" in out.stdout
    bad = subprocess.run(
        [nids, "hot", "init"],
        env={**env, "NIDS_DUCKLAKE_CATALOG": ""},
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert "NIDS_HOT_STORE=ducklake needs NIDS_DUCKLAKE_CATALOG" in bad.stderr


def test_lifecycle_deletes_and_maintenance_beside_a_writer_retry_and_lose_nothing(lake):
    """The lifecycle job's deletes and DuckLake's maintenance while a writer commits into
    the same table: a commit that loses is retried, and every row is where it belongs."""
    from datetime import UTC, datetime

    from nids_core.stores.lifecycle import quarantine_implausible, remove_uids_stored_twice
    from nids_core.zeek.files import read_zeek_file

    store = DuckLakeStore(lake)
    first = finish(start_writer(writer_args(lake, 0, 0, 3000, 500, 0)))
    assert first["inserted"] == 3000
    ts = read_zeek_file(iot23(CAPTURE)).flows["ts"].sort()
    cut = ts[1500]  # half of the first 3,000 rows lie before it
    with store.connect() as con:
        before_cut = con.execute("SELECT count(*) FROM flows WHERE ts < ?", [cut]).fetchone()[0]
    writer = start_writer(writer_args(lake, 1, 3000, 7403, 250, time.time() + 1))
    moved = 0
    maintenance = {}
    with store.connect() as con:
        time.sleep(1.5)
        # The plausible window narrowed to start at `cut`: those rows move to quarantine.
        moved = store.retrying(lambda: quarantine_implausible(con, cut, datetime.now(UTC)))
        store.retrying(lambda: remove_uids_stored_twice(con))
        maintenance = store.maintain(con, datetime.now(UTC))
    totals = finish(writer)
    assert totals["inserted"] == 7403
    with store.connect() as con:
        stored = con.execute("SELECT count(*), count(DISTINCT uid) FROM flows").fetchone()
        quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    assert moved >= before_cut > 0
    assert quarantined == moved
    assert stored == (10403 - moved, 10403 - moved)
    assert set(maintenance) == {
        "flush_inlined_data",
        "merge_adjacent_files",
        "expire_snapshots",
        "cleanup_old_files",
    }
