"""Ingest throughput against the bundled Kafka-protocol broker, on real IoT-23 records.

Produces at least 200,000 flow records (the IoT-23 captures replayed repeatedly, uids made
unique per pass), then measures in the same run:
  (a) a bare consume of all records with the chosen client (our read_range loop), and
  (b) the ingest job end to end (sensor ticks -> landing Parquet -> DuckDB upsert ->
      offset commit), until the group has no lag, then the cold maintenance (the new
      batches appended to their cold days).
With --hot-rows N the records are stamped as a live sensor at 1,000 flows/s sends them,
(b) runs twice, on an empty hot store and on one pre-filled with N flows of the 24 hours
before (and their predictions; the cold days the stream reaches hold their rows of it),
and (c) times the hot store's per-batch work (upsert, scoring, alerts refresh) on both.
With --daemon the same records are also ingested under `dagster-daemon` (each run its own
process), timed from the first run's start until the group has caught up.
The last line is the contract: `ingest[<client>]: <N> flows/s, <R>x raw consume` (with
--daemon, under the daemon; with --hot-rows, for the pre-filled store).

With --hot-store ducklake --writers N the records go to N partitions and are ingested on
the production profile (Dagster on PostgreSQL, landing on S3 (moto), the hot store a
DuckLake with its catalog in PostgreSQL and its data on S3) by N ingest processes at once,
one partition each, beside one process doing all N partitions and one process writing a
DuckDB file instead; the last line is then
`ingest[ducklake x<N>]: <flows/s> flows/s, <R>x one writer, exact=<yes|no>`.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from dagster import DagsterInstance
from hot_costs import LIVE_RATE, live_batches, measure, small_scorer
from hot_prefill import prefill_cold, prefill_hot
from run_timeline import failure_reason, ingest_timeline

from nids_cli.driver import drain
from nids_core.kafka import DEFAULT_TOPIC
from nids_core.kafka.log import KafkaSettings, open_client, open_producer
from nids_core.kafka.offsets import OffsetRange
from nids_core.stores.cold import ColdStore
from nids_core.training_data.data_dir import find_data_dir, iot23_files
from nids_core.zeek.files import read_zeek_file
from nids_devkit.broker import create_topic, start_broker
from nids_devkit.replay import replay_files, to_zeek_json
from nids_jobs.definitions import build_definitions
from nids_resources.kafka import KafkaResource
from nids_resources.mlflow import (
    MlflowTrackingResource,
    ModelRegistryResource,
    ModelSettingsResource,
)
from nids_resources.plausibility import PlausibleTimeResource
from nids_resources.reference import ReferenceCorpusResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.stores import ColdStoreResource, HotStoreResource

PER_PASS = 46_425  # flows in the eight IoT-23 captures together


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def step_breakdown(instance) -> dict[str, float]:
    """Seconds spent in the batch work itself, summed from the materialization metadata."""
    from dagster import AssetKey

    totals = {"kafka read": 0.0, "parse": 0.0, "landing write": 0.0, "duckdb upsert": 0.0}
    for key, fields in (
        (
            "flow_batch",
            {
                "read_seconds": "kafka read",
                "parse_seconds": "parse",
                "write_seconds": "landing write",
            },
        ),
        ("hot_flows", {"write_seconds": "duckdb upsert"}),
    ):
        for rec in instance.fetch_materializations(AssetKey(key), limit=10_000).records:
            md = rec.asset_materialization.metadata
            for field, name in fields.items():
                totals[name] += float(md[field].value)
    return totals


def ingest_pass(args, broker, topic: str, work: Path, hot: Path, group: str, label: str):
    """The ingest job end to end into `hot` as consumer group `group`; returns the rate."""
    home = work / f"dagster_home-{group}"
    home.mkdir()
    cold_store = ColdStoreResource(url=str(work / f"cold-{group}"))
    defs = build_definitions(
        {
            "kafka": KafkaResource(
                bootstrap_servers=broker.bootstrap_servers,
                topic=topic,
                client=args.client,
                group_id=group,
                max_batch_records=args.max_batch_records,
            ),
            "hot_store": HotStoreResource(database=str(hot)),
            "cold_store": cold_store,
            # Not used by ingestion; the code location needs them to load.
            "reference_corpus": ReferenceCorpusResource(
                include_data_dir=False, cold_store=cold_store
            ),
            "mlflow_tracking": MlflowTrackingResource(
                mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}"
            ),
            "model_registry": ModelRegistryResource(tracking_uri=f"sqlite:///{work / 'mlflow.db'}"),
            "model_settings": ModelSettingsResource(),
            "serving": ServingSettingsResource(),
            "plausible_time": PlausibleTimeResource(),
        }
    )
    overrides = {"concurrency": {"pools": {"default_limit": 1}}, "telemetry": {"enabled": False}}
    with DagsterInstance.local_temp(tempdir=str(home), overrides=overrides) as instance:
        t0 = time.perf_counter()
        stats = drain(defs, instance, {}, log_level="WARNING", cold=False, serve=False)
        ingest_s = time.perf_counter() - t0
        # The cold rebuild is a separate job (its sensor ticks every minute); timed apart.
        breakdown = step_breakdown(instance)
        t0 = time.perf_counter()
        cold = drain(
            defs, instance, {"kafka_ingest_sensor": None}, log_level="WARNING", serve=False
        )
        cold_s = time.perf_counter() - t0
    if stats.failed_runs or cold.failed_runs:
        sys.exit(f"{stats.failed_runs + cold.failed_runs} runs failed")
    import duckdb

    con = duckdb.connect(str(hot), read_only=True)
    stored = con.execute("SELECT count(*) FROM flows WHERE topic = ?", [topic]).fetchone()[0]
    con.close()
    if stored != args.sent:
        sys.exit(f"stored {stored} flows of {args.sent} produced")
    rate = args.sent / ingest_s
    print(
        f"ingest job end to end [{args.client}, {label}]: {args.sent} flows in {ingest_s:.2f} s "
        f"({stats.ingest_runs} ingest runs of <= {args.max_batch_records}) = {rate:,.0f}/s"
    )
    print("    inside the job: " + ", ".join(f"{k} {v:.2f} s" for k, v in breakdown.items()))
    fixed = (ingest_s - sum(breakdown.values())) / stats.ingest_runs
    print(
        f"    outside the batch work: {fixed:.2f} s per run (Dagster run and step machinery, "
        "sensor tick, Kafka client setup, DuckDB checkpoint and checks)"
    )
    print(
        f"    cold maintenance (batches appended to their days): {cold.cold_runs} runs in "
        f"{cold_s:.2f} s ({cold_s / stats.ingest_runs:.3f} s per ingest batch)"
    )
    return rate, cold_s / stats.ingest_runs


def daemon_pass(args, broker, topic: str, work: Path) -> float:
    """The same records ingested the way users run it: `dagster-daemon run` on a temporary
    embedded-default home (queued runs, each in its own process, sensors on their default
    intervals), from the start of the first ingest run until the group has caught up."""
    from nids_cli.local_daemon import embedded_env, start_daemon, stop_daemon, wait_until_idle

    group = "nids-etl-daemon"
    env = embedded_env(
        work / "daemon",
        broker.bootstrap_servers,
        NIDS_KAFKA_TOPIC=topic,
        NIDS_KAFKA_CLIENT=args.client,
        NIDS_KAFKA_GROUP=group,
        NIDS_KAFKA_MAX_BATCH_RECORDS=str(args.max_batch_records),
        NIDS_REFERENCE_DATA_DIR="false",
    )
    started = time.time()
    daemon = start_daemon(env, work / "daemon.log")
    try:
        settings = KafkaSettings(broker.bootstrap_servers, group)
        with open_client("kafka-python", settings) as client:
            parts = client.partitions(topic)
            high = {p: m.high for p, m in client.watermarks(topic, parts).items()}
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                committed = client.committed(topic, parts)
                if all((committed[p] or 0) >= high[p] for p in parts):
                    break
                time.sleep(0.5)
            else:
                sys.exit("the daemon did not catch up within 30 minutes")
        caught_up = time.time()
        # The run that committed last is still writing its end: let it finish, so the
        # shutdown does not fail it.
        wait_until_idle(env["DAGSTER_HOME"], timeout_s=120, quiet_s=3)
    finally:
        stop_daemon(daemon)
    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = [
            r
            for r in instance.get_run_records(limit=100_000)
            if r.dagster_run.job_name == "ingest_job"
        ]
        for r in runs:
            if r.dagster_run.status.value == "FAILURE":
                why = failure_reason(instance, r.dagster_run.run_id)
                print(f"    failed run {r.dagster_run.tags.get('nids/offset_range')}: {why[:300]}")
    first = min(r.start_time for r in runs if r.start_time)
    failed = sum(r.dagster_run.status.value == "FAILURE" for r in runs)
    rate = args.sent / (caught_up - first)
    print(f"    {ingest_timeline(runs)}")
    print(
        f"ingest under dagster-daemon [{args.client}]: {args.sent} flows in "
        f"{caught_up - first:.1f} s from the first run's start ({len(runs)} ingest runs, "
        f"{failed} failed) = {rate:,.0f}/s; {caught_up - started:.1f} s from the daemon's start"
    )
    return rate


def produce(args, broker, topic: str, files, live_start: datetime | None) -> int:
    settings = KafkaSettings(broker.bootstrap_servers, "bench-raw")
    t0 = time.perf_counter()
    with open_producer("confluent", settings) as producer:
        if live_start is None:
            repeat = -(-args.records // PER_PASS)
            sent = replay_files(files, producer, topic, repeat=repeat).sent
        else:
            flows = load_flows(files)
            rows = pl.concat(live_batches(flows, live_start, LIVE_RATE, args.records, 1, "s"))
            lines = to_zeek_json(rows)
            keys = [u.encode() for u in rows["uid"]]
            for i in range(0, len(lines), 10_000):
                producer.send_many(
                    topic, list(zip(keys[i : i + 10_000], lines[i : i + 10_000], strict=True))
                )
            producer.flush()
            sent = len(lines)
    how = "stamped live" if live_start else "as captured"
    print(f"produced {sent} records ({how}) in {time.perf_counter() - t0:.1f} s")
    return sent


def bare_consume(args, broker, topic: str, consumed_expected: int) -> float:
    """The bare consume rate; the better of two passes, since the first pays for the
    broker's cold start that the ingest runs, coming later, do not."""
    settings = KafkaSettings(broker.bootstrap_servers, "bench-raw")
    raw_passes = []
    for _ in range(2):
        with open_client(args.client, settings) as client:
            parts = client.partitions(topic)
            marks = client.watermarks(topic, parts)
            t0 = time.perf_counter()
            consumed = sum(
                len(client.read_range(OffsetRange(topic, p, marks[p].low, marks[p].high)))
                for p in parts
                if marks[p].high > marks[p].low
            )
            raw_passes.append(time.perf_counter() - t0)
    if consumed != consumed_expected:
        sys.exit(f"consumed {consumed} of {consumed_expected} records")
    raw_s = min(raw_passes)
    raw_rate = consumed / raw_s
    print(
        f"bare consume [{args.client}]: {consumed} records in {raw_s:.2f} s = {raw_rate:,.0f}/s "
        f"(passes: {', '.join(f'{s:.2f} s' for s in raw_passes)})"
    )
    return raw_rate


def hot_batch_costs(
    flows: pl.DataFrame, work: Path, rows: int, live_start: datetime, make_store=None
) -> None:
    """(c) the hot store's per-batch work, on an empty store and on a pre-filled one (DuckDB
    files, or what `make_store(label)` makes)."""
    t0 = time.perf_counter()
    scorer = small_scorer(flows)
    print(f"(c) trained a small scorer in {time.perf_counter() - t0:.1f} s")
    # Later than the ingested stream, at the start of an hour: the batches' graph and alert
    # windows then hold the same rows on both stores (a window already part-filled by the
    # pre-filled day would give the full store more context to score, not more rows to skip).
    after = (live_start + timedelta(hours=2)).replace(minute=0, second=0)
    results = {}
    for label, n in (("empty", 0), (f"{rows:,} rows", rows)):
        path = make_store(f"costs-{n}") if make_store else work / f"costs-{n}.duckdb"
        if n:
            t0 = time.perf_counter()
            prefill_hot(path, flows, n, after)
            print(f"    pre-filled {n:,} flows in {time.perf_counter() - t0:.0f} s")
        batches = live_batches(flows, after, LIVE_RATE, 50_000, 6, "c")
        costs = measure(path, batches, scorer)
        results[label] = costs.medians()
        up, sc, al = results[label]
        print(
            f"    {label}: per batch of 50,000: upsert {up:.3f} s, scoring {sc:.3f} s, "
            f"alerts {al:.3f} s (median of 5)"
        )
    (e_up, e_sc, e_al), (f_up, f_sc, f_al) = results.values()
    print(
        f"    full / empty: upsert {f_up / e_up:.2f}x, scoring {f_sc / e_sc:.2f}x, "
        f"alerts {f_al / e_al:.2f}x"
    )


@contextmanager
def _environment(env: dict[str, str]):
    """The process's environment set to `env` for the block (the Dagster instance and the
    resources read theirs from it), restored after."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def lake_batch_costs(args, work: Path) -> None:
    """(c) on DuckLakes: an empty one and one holding `--hot-rows` flows (data in a local
    folder: a day of Parquet is more than moto's in-memory S3 should hold)."""
    import uuid

    import psycopg2

    from nids_core.stores.hot_backend import DuckLakeStore
    from nids_core.stores.lake import LakeLocation

    admin = psycopg2.connect(args.pg + " dbname=postgres")
    admin.autocommit = True
    made = []

    def make_store(label: str) -> DuckLakeStore:
        name = f"nids_bench_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return DuckLakeStore(LakeLocation(f"{args.pg} dbname={name}", str(work / label)))

    print("(c) on DuckLake (catalog in PostgreSQL, data in a local folder):")
    try:
        hot_batch_costs(
            load_flows(iot23_files(find_data_dir())),
            work,
            args.hot_rows,
            datetime.now(UTC).replace(microsecond=0),
            make_store,
        )
    finally:
        with admin.cursor() as cur:
            for name in made:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def writer_passes(args, broker, topic: str, work: Path) -> None:
    """(d) N ingest processes at once on a DuckLake, against one on a DuckLake and one on a
    DuckDB file; each pass its own consumer group, Dagster database and hot store."""
    import json
    import logging
    import subprocess
    import uuid

    import boto3
    import psycopg2
    from moto.server import ThreadedMotoServer

    from nids_devkit.broker import free_port
    from nids_resources.from_env import hot_store_from_env

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1"}
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    ).create_bucket(Bucket="nids-bench")
    admin = psycopg2.connect(args.pg + " dbname=postgres")
    admin.autocommit = True
    made: list[str] = []

    def database() -> str:
        name = f"nids_bench_{uuid.uuid4().hex[:8]}"
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return name

    pg = dict(kv.split("=", 1) for kv in args.pg.split())
    passes = [("duckdb", 1), ("ducklake", 1), ("ducklake", args.writers)]
    results = {}
    try:
        for kind, writers in passes:
            label = f"{kind}-x{writers}"
            home = work / f"dagster-{label}"
            home.mkdir()
            shutil.copy(Path(__file__).parents[1] / "deploy" / "dagster.yaml", home)
            env = {
                **os.environ,
                **s3,
                "DAGSTER_HOME": str(home),
                "DAGSTER_PG_HOST": pg.get("host", "127.0.0.1"),
                "DAGSTER_PG_PORT": pg.get("port", "5432"),
                "DAGSTER_PG_DB": database(),
                "DAGSTER_PG_USER": pg.get("user", "postgres"),
                "DAGSTER_PG_PASSWORD": os.environ.get("PGPASSWORD", ""),
                "NIDS_KAFKA_BOOTSTRAP": broker.bootstrap_servers,
                "NIDS_KAFKA_TOPIC": topic,
                "NIDS_KAFKA_GROUP": f"bench-{label}",
                "NIDS_KAFKA_CLIENT": args.client,
                "NIDS_KAFKA_MAX_BATCH_RECORDS": str(args.max_batch_records),
                "NIDS_COLD_URL": f"s3://nids-bench/cold-{label}",
                "NIDS_S3_ENDPOINT_URL": endpoint,
                "NIDS_HOT_STORE": kind,
                "NIDS_DUCKDB_PATH": str(work / f"hot-{label}.duckdb"),
                "NIDS_DUCKLAKE_CATALOG": f"{args.pg} dbname={database()}",
                "NIDS_DUCKLAKE_DATA_PATH": f"s3://nids-bench/hot-{label}",
                "NIDS_REFERENCE_DATA_DIR": "false",
                "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
                "NIDS_MODEL_SIGNING_KEY": "bench-" + uuid.uuid4().hex,
                "PYTHONPATH": str(Path(__file__).parents[1]),
            }
            # Dagster's tables and the hot store's catalog made once, before the writers.
            with _environment(env):
                with DagsterInstance.get() as instance:
                    # The pool's slots too: two first runs creating them at once on a fresh
                    # database can fail one of them (a long-lived instance has them).
                    instance.event_log_storage.initialize_concurrency_limit_to_default("duckdb")
                hot = hot_store_from_env()
                with hot.backend().connect():
                    pass
            start_at = time.time() + 20
            procs = [
                subprocess.Popen(
                    [
                        sys.executable,
                        str(Path(__file__).with_name("ingest_writer.py")),
                        json.dumps(
                            {
                                "topic": topic,
                                "partitions": [p for p in range(args.writers) if p % writers == k],
                                "max_batch_records": args.max_batch_records,
                                "start_at": start_at,
                            }
                        ),
                    ],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for k in range(writers)
            ]
            outs = []
            for proc in procs:
                out, err = proc.communicate(timeout=1800)
                if proc.returncode != 0:
                    sys.exit(f"a {label} writer failed: {err[-3000:]}")
                outs.append(json.loads(out.strip().splitlines()[-1]))
                if "Traceback" in err:
                    print(f"    a {label} writer's errors: {err[-2500:]}")
            late = max(o["started"] for o in outs) - start_at
            seconds = max(o["ended"] for o in outs) - start_at
            failed = sum(o["failed"] for o in outs)
            with hot.backend().connect(read_only=True) as con:
                stored, uids = con.execute(
                    "SELECT count(*), count(DISTINCT uid) FROM flows"
                ).fetchone()
                quarantined = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
            settings = KafkaSettings(broker.bootstrap_servers, f"bench-{label}")
            with open_client("kafka-python", settings) as client:
                parts = list(range(args.writers))
                high = client.watermarks(topic, parts)
                committed = client.committed(topic, parts)
            exact = (
                failed == 0
                and stored == uids
                and stored + quarantined == args.sent
                and all(committed[p] == high[p].high for p in parts)
            )
            rate = args.sent / seconds
            runs = sum(o["runs"] for o in outs)
            with _environment(env), DagsterInstance.get() as instance:
                breakdown = step_breakdown(instance)
                for r in instance.get_run_records():
                    if r.dagster_run.status.value == "FAILURE":
                        why = failure_reason(instance, r.dagster_run.run_id)
                        print(f"    failed run {r.dagster_run.run_id[:8]}: {why[-1500:]}")
            results[(kind, writers)] = (rate, exact)
            print(
                f"(d) {kind} hot store, {writers} writer process(es) over {args.writers} "
                f"partitions: {args.sent} records in {seconds:.1f} s = {rate:,.0f} flows/s "
                f"({runs} runs, {failed} failed; last writer started {late:.1f} s late); "
                f"stored {stored} ({uids} uids), quarantined {quarantined}, "
                f"exact={'yes' if exact else 'no'}"
            )
            print(
                "    inside the runs (all writers summed): "
                + ", ".join(f"{k} {v:.2f} s" for k, v in breakdown.items())
            )
            if kind == "ducklake":
                print(f"    per writer process: {rate / writers:,.0f} flows/s")
    finally:
        with admin.cursor() as cur:
            for name in made:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        moto.stop()
    if args.hot_rows:
        lake_batch_costs(args, work)
    file_rate, _ = results[("duckdb", 1)]
    one, _ = results[("ducklake", 1)]
    many, exact = results[("ducklake", args.writers)]
    print(f"    DuckLake, one writer / DuckDB file, one writer: {one / file_rate:.2f}x")
    print(
        f"ingest[ducklake x{args.writers}]: {many:,.0f} flows/s, {many / one:.2f}x one writer, "
        f"exact={'yes' if exact else 'no'}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--client", choices=["kafka-python", "confluent"], default="kafka-python")
    ap.add_argument("--records", type=int, default=200_000, help="at least this many records")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument(
        "--max-batch-records",
        type=int,
        default=KafkaResource.model_fields["max_batch_records"].default,
        help="the ingest runs' ceiling (default: NIDS_KAFKA_MAX_BATCH_RECORDS's default)",
    )
    ap.add_argument(
        "--daemon",
        action="store_true",
        help="also ingest the records under dagster-daemon (the last line is then its rate)",
    )
    ap.add_argument(
        "--hot-rows",
        type=int,
        default=None,
        help="also measure on a hot store pre-filled with this many flows (86000000: a day "
        "at 1,000 flows/s)",
    )
    ap.add_argument(
        "--hot-store",
        choices=["duckdb", "ducklake"],
        default="duckdb",
        help="ducklake: measure N ingest processes at once on the production profile (see "
        "--writers); the last line is then the DuckLake contract",
    )
    ap.add_argument("--writers", type=int, default=2, help="ingest processes at once (ducklake)")
    ap.add_argument(
        "--pg",
        default="host=127.0.0.1 port=5432 user=postgres",
        help="PostgreSQL (libpq, without dbname; the password from PGPASSWORD) for the "
        "ducklake passes' Dagster storage and catalogs",
    )
    args = ap.parse_args()
    if args.hot_store == "ducklake":
        # As a live sensor sends them (ts 1,000 flows/s apart from now), so that a batch's
        # stored neighbours are the minutes around it, as in a deployment.
        args.partitions = args.writers
        live_start = datetime.now(UTC).replace(microsecond=0)

    files = iot23_files(find_data_dir())
    if not files:
        sys.exit("no IoT-23 captures in the data directory (see `nids data download`)")
    work = Path(tempfile.mkdtemp(prefix="nids-bench-"))
    if args.hot_store != "ducklake":
        live_start = None
    if args.hot_rows is not None:
        live_start = datetime.now(UTC).replace(microsecond=0)
    try:
        with start_broker() as broker:
            topic = DEFAULT_TOPIC
            create_topic(broker.bootstrap_servers, topic, args.partitions)
            args.sent = produce(args, broker, topic, files, live_start)
            if args.hot_store == "ducklake":
                writer_passes(args, broker, topic, work)
                return
            raw_rate = bare_consume(args, broker, topic, args.sent)
            rate, empty_cold = ingest_pass(
                args, broker, topic, work, work / "hot.duckdb", "nids-etl", "empty hot store"
            )
            print(f"    peak RSS after ingest: {peak_rss_mib():,.0f} MiB")
            if args.daemon:
                in_process = rate
                rate = daemon_pass(args, broker, topic, work)
                print(
                    f"    under the daemon / in-process: {rate / in_process:.2f}x "
                    f"({rate / raw_rate:.2f}x raw consume)"
                )
            if args.hot_rows:
                flows = load_flows(files)
                t0 = time.perf_counter()
                prefill_hot(str(work / "full.duckdb"), flows, args.hot_rows, live_start)
                print(
                    f"pre-filled a hot store with {args.hot_rows:,} flows of the 24 h before the "
                    f"stream in {time.perf_counter() - t0:.0f} s"
                )
                stream_days = sorted(
                    {
                        live_start.date().isoformat(),
                        (live_start + timedelta(seconds=args.sent / LIVE_RATE)).date().isoformat(),
                    }
                )
                t0 = time.perf_counter()
                in_cold = prefill_cold(
                    str(work / "full.duckdb"),
                    ColdStore(str(work / "cold-nids-etl-full")),
                    stream_days,
                )
                print(
                    "pre-filled the stream's cold days with their rows of that store ("
                    + ", ".join(f"{d}: {n:,}" for d, n in in_cold.items())
                    + f") in {time.perf_counter() - t0:.0f} s"
                )
                empty_rate = rate
                rate, full_cold = ingest_pass(
                    args,
                    broker,
                    topic,
                    work,
                    work / "full.duckdb",
                    "nids-etl-full",
                    f"{args.hot_rows:,} rows in the hot store",
                )
                print(
                    f"    full / empty: ingest rate {rate / empty_rate:.2f}x, cold maintenance "
                    f"per batch {full_cold / empty_cold:.2f}x"
                )
                (work / "full.duckdb").unlink()
                hot_batch_costs(flows, work, args.hot_rows, live_start)
        print(f"peak RSS of the whole bench: {peak_rss_mib():,.0f} MiB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"ingest[{args.client}]: {rate:,.0f} flows/s, {rate / raw_rate:.2f}x raw consume")


def load_flows(files) -> pl.DataFrame:
    return pl.concat([read_zeek_file(f).flows for f in files])


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    main()
