"""Scoring throughput and end-to-end latency, on real IoT-23 flows.

(a) Scoring throughput, graph construction included: the IoT-23 captures repeated to at
    least 200,000 flows (uids made unique, each pass moved later in time so passes do not
    share graph windows) in a hot DuckDB table, scored by `score_unscored` with a model
    trained here on the same captures.
(b) End-to-end latency at a steady rate: a producer thread sends the captures' flows at
    --rate flows/s (default 1,000) for --seconds (default 120) with their timestamps set to
    the send time; the sensors are ticked at their default intervals (Kafka sensor every
    5 s, serving automation every 30 s) and their runs executed in this process, one at a
    time, against a real Dagster instance, the bundled broker and a local MLflow store.
    Latency = predicted_at - send time, for every flow sent.
The last line is the contract: `inference: <N> flows/s, e2e p50 <A> s, p95 <B> s`.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb
import mlflow
import numpy as np
import polars as pl
from dagster import AssetKey, DagsterInstance

from nids_core.data_dir import find_data_dir, iot23_files
from nids_core.hot_store import ensure_schema, upsert_flows
from nids_core.kafka_log import KafkaSettings, open_producer
from nids_core.local_broker import create_topic, start_broker
from nids_core.model_registry import ModelRegistry
from nids_core.model_run import train_evaluate_log
from nids_core.replay import to_zeek_json
from nids_core.scoring import score_unscored
from nids_core.splits import time_split
from nids_core.training import TrainConfig
from nids_core.zeek_files import read_zeek_file
from nids_jobs.definitions import build_definitions
from nids_jobs.driver import _tick, execute_request, run_automation
from nids_resources.kafka import KafkaResource
from nids_resources.mlflow import (
    MlflowTrackingResource,
    ModelRegistryResource,
    ModelSettingsResource,
)
from nids_resources.serving import ServingSettingsResource
from nids_resources.stores import ColdStoreResource, HotStoreResource

KAFKA_SENSOR_INTERVAL_S = 5  # the sensors' defaults (NIDS_KAFKA_SENSOR_INTERVAL_S)
AUTOMATION_INTERVAL_S = 30  # (NIDS_AUTOMATION_INTERVAL_S)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_flows() -> pl.DataFrame:
    files = iot23_files(find_data_dir())
    if not files:
        sys.exit("no IoT-23 captures in the data directory (see `nids data download`)")
    return pl.concat([read_zeek_file(f).flows for f in files])


def train_champion(flows: pl.DataFrame, tracking_uri: str, work: Path) -> ModelRegistry:
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.create_experiment("bench-inference", artifact_location=(work / "artifacts").as_uri())
    mlflow.set_experiment("bench-inference")
    with mlflow.start_run():
        run = train_evaluate_log(
            time_split(flows.filter(pl.col("label").is_not_null())),
            TrainConfig(),
            registered_model_name="nids-gnn",
        )
    registry = ModelRegistry(tracking_uri, "nids-gnn")
    registry.mark_gate(run.model_version, True)
    registry.set_challenger(run.model_version)
    return registry


def repeated(flows: pl.DataFrame, at_least: int) -> pl.DataFrame:
    span = flows["ts"].max() - flows["ts"].min() + timedelta(days=1)
    passes = -(-at_least // flows.height)
    return pl.concat(
        [
            flows.with_columns(
                (pl.col("uid") + f"-p{i}").alias("uid"),
                (pl.col("ts") + span * i).alias("ts"),
            )
            for i in range(passes)
        ]
    )


def throughput(flows: pl.DataFrame, registry: ModelRegistry, work: Path) -> tuple[int, float]:
    from nids_core.model_cache import load_version

    version = registry.version_by_alias("challenger").version
    scorer = load_version(registry, version, work / "cache")
    data = repeated(flows, 200_000).with_columns(
        pl.lit("bench").alias("topic"),
        pl.lit(0, dtype=pl.Int32).alias("partition"),
        pl.int_range(pl.len()).alias("offset"),
    )
    con = duckdb.connect(str(work / "throughput.duckdb"))
    ensure_schema(con)
    upsert_flows(con, data)
    counts = score_unscored(con, scorer, version)
    con.close()
    return counts.inserted, counts.seconds


def producer_thread(bootstrap, topic, flows, rate, seconds, sent_log, stop):
    total = int(rate * seconds)
    data = repeated(flows, total).head(total)
    with open_producer("confluent", KafkaSettings(bootstrap, "bench-producer")) as producer:
        step = max(1, rate // 20)
        t0 = time.time()
        for i in range(0, total, step):
            due = t0 + i / rate
            if (delay := due - time.time()) > 0:
                time.sleep(delay)
            if stop.is_set():
                break
            now = time.time()
            chunk = data.slice(i, step).with_columns(
                pl.lit(datetime.fromtimestamp(now, UTC)).alias("ts")
            )
            producer.send_many(topic, [(None, v) for v in to_zeek_json(chunk)])
            sent_log.append((chunk["uid"].to_list(), now))
        producer.flush()


def end_to_end(flows, registry, work, rate, seconds):
    home = work / "dagster_home"
    home.mkdir()
    with start_broker() as broker:
        topic = "zeek.conn"
        create_topic(broker.bootstrap_servers, topic, 1)
        defs = build_definitions(
            {
                "kafka": KafkaResource(bootstrap_servers=broker.bootstrap_servers, topic=topic),
                "hot_store": HotStoreResource(database=str(work / "hot.duckdb")),
                "cold_store": ColdStoreResource(url=str(work / "cold")),
                "mlflow_tracking": MlflowTrackingResource(
                    mlflow_tracking_uri=registry.tracking_uri
                ),
                "model_registry": ModelRegistryResource(tracking_uri=registry.tracking_uri),
                "model_settings": ModelSettingsResource(),
                "serving": ServingSettingsResource(model_cache_dir=str(work / "cache")),
            }
        )
        overrides = {
            "concurrency": {"pools": {"default_limit": 1}},
            "telemetry": {"enabled": False},
        }
        with DagsterInstance.local_temp(tempdir=str(home), overrides=overrides) as instance:
            promoted = defs.resolve_job_def("training_job").execute_in_process(
                instance=instance, asset_selection=[AssetKey("champion_model")]
            )
            assert promoted.success
            cursors: dict = {}
            run_automation(defs, instance, cursors)  # first evaluation sets the cursor
            sent_log: list = []
            stop = threading.Event()
            producer = threading.Thread(
                target=producer_thread,
                args=(broker.bootstrap_servers, topic, flows, rate, seconds, sent_log, stop),
            )
            producer.start()
            next_ingest = next_automation = time.monotonic()
            deadline = time.monotonic() + seconds + 180
            runs = {"ingest": 0, "scoring": 0, "failed": 0}
            while time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_ingest:
                    next_ingest = now + KAFKA_SENSOR_INTERVAL_S
                    requests, _, cursors["kafka_ingest_sensor"] = _tick(
                        defs, instance, "kafka_ingest_sensor", cursors
                    )
                    for req in requests:
                        ok = execute_request(defs, instance, "ingest_job", req, "WARNING")
                        runs["ingest"] += 1
                        runs["failed"] += 0 if ok else 1
                if now >= next_automation:
                    next_automation = now + AUTOMATION_INTERVAL_S
                    n, failed = run_automation(defs, instance, cursors, "WARNING")
                    runs["scoring"] += n
                    runs["failed"] += failed
                if not producer.is_alive():
                    sent = sum(len(u) for u, _ in sent_log)
                    con = duckdb.connect(str(work / "hot.duckdb"), read_only=True)
                    scored = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
                    con.close()
                    if scored >= sent:
                        break
                time.sleep(0.2)
            stop.set()
            producer.join()
        sent_at = pl.DataFrame(
            {
                "uid": [u for uids, _ in sent_log for u in uids],
                "sent_at": [t for uids, t in sent_log for _ in uids],
            }
        )
        con = duckdb.connect(str(work / "hot.duckdb"), read_only=True)
        predicted = con.execute(
            "SELECT uid, epoch_us(predicted_at) / 1e6 AS predicted_at FROM predictions"
        ).pl()
        con.close()
    joined = sent_at.join(predicted, on="uid", how="left")
    missing = joined["predicted_at"].null_count()
    latency = (joined["predicted_at"] - joined["sent_at"]).drop_nulls().to_numpy()
    return sent_at.height, missing, latency, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000, help="flows/s for the latency run")
    ap.add_argument("--seconds", type=int, default=120, help="length of the latency run")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nids-bench-inference-"))
    try:
        flows = load_flows()
        t0 = time.perf_counter()
        registry = train_champion(flows, f"sqlite:///{work / 'mlflow.db'}", work)
        print(f"trained and registered a champion in {time.perf_counter() - t0:.1f} s")
        n, secs = throughput(flows, registry, work)
        rate = n / secs
        print(f"(a) scored {n} flows (graph construction included) in {secs:.2f} s = {rate:,.0f}/s")
        print(f"    peak RSS so far: {peak_rss_mib():,.0f} MiB")
        sent, missing, latency, runs = end_to_end(flows, registry, work, args.rate, args.seconds)
        p50, p95, p99 = np.percentile(latency, [50, 95, 99])
        print(
            f"(b) {sent} flows sent at {args.rate}/s for {args.seconds} s; "
            f"{runs['ingest']} ingest runs, {runs['scoring']} scoring runs, "
            f"{runs['failed']} failed; {missing} flows without a prediction"
        )
        print(
            f"    latency produce -> prediction: p50 {p50:.1f} s, p95 {p95:.1f} s, p99 {p99:.1f} s, max {latency.max():.1f} s"
        )
        print(f"peak RSS: {peak_rss_mib():,.0f} MiB")
        if missing:
            sys.exit(f"{missing} flows were never scored")
        print(f"inference: {rate:,.0f} flows/s, e2e p50 {p50:.1f} s, p95 {p95:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    import logging

    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    logging.getLogger("dagster.automation_condition_tester").setLevel(logging.WARNING)
    main()
