"""Ingest throughput against the bundled Kafka-protocol broker, on real IoT-23 records.

Produces at least 200,000 flow records (the IoT-23 captures replayed repeatedly, uids made
unique per pass), then measures in the same run:
  (a) a bare consume of all records with the chosen client (our read_range loop), and
  (b) the ingest job end to end (sensor ticks -> landing Parquet -> DuckDB upsert ->
      offset commit, plus the cold-partition rebuild), until the group has no lag.
The last line is the contract: `ingest[<client>]: <N> flows/s, <R>x raw consume`.
"""

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dagster import DagsterInstance

from nids_cli.driver import drain
from nids_core.kafka import DEFAULT_TOPIC
from nids_core.kafka.log import KafkaSettings, open_client, open_producer
from nids_core.kafka.offsets import OffsetRange
from nids_core.training_data.data_dir import find_data_dir, iot23_files
from nids_devkit.broker import create_topic, start_broker
from nids_devkit.replay import replay_files
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--client", choices=["kafka-python", "confluent"], default="kafka-python")
    ap.add_argument("--records", type=int, default=200_000, help="at least this many records")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--max-batch-records", type=int, default=50_000)
    args = ap.parse_args()

    files = iot23_files(find_data_dir())
    if not files:
        sys.exit("no IoT-23 captures in the data directory (see `nids data download`)")
    work = Path(tempfile.mkdtemp(prefix="nids-bench-"))
    home = work / "dagster_home"
    home.mkdir()
    repeat = -(-args.records // PER_PASS)
    with start_broker() as broker:
        topic = DEFAULT_TOPIC
        create_topic(broker.bootstrap_servers, topic, args.partitions)
        settings = KafkaSettings(broker.bootstrap_servers, "bench-raw")
        t0 = time.perf_counter()
        with open_producer("confluent", settings) as producer:
            sent = replay_files(files, producer, topic, repeat=repeat).sent
        print(f"produced {sent} records in {time.perf_counter() - t0:.1f} s ({repeat} passes)")

        # (a) bare consume with the same client; the better of two passes, since the first
        # pays for the broker's cold start that the ingest runs, coming later, do not.
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
        raw_s = min(raw_passes)
        raw_rate = consumed / raw_s
        print(
            f"bare consume [{args.client}]: {consumed} records in {raw_s:.2f} s = {raw_rate:,.0f}/s "
            f"(passes: {', '.join(f'{s:.2f} s' for s in raw_passes)})"
        )

        # (b) the ingest job end to end
        cold_store = ColdStoreResource(url=str(work / "cold"))
        defs = build_definitions(
            {
                "kafka": KafkaResource(
                    bootstrap_servers=broker.bootstrap_servers,
                    topic=topic,
                    client=args.client,
                    max_batch_records=args.max_batch_records,
                ),
                "hot_store": HotStoreResource(database=str(work / "hot.duckdb")),
                "cold_store": cold_store,
                # Not used by ingestion; the code location needs them to load.
                "reference_corpus": ReferenceCorpusResource(
                    include_iot23=False, cold_store=cold_store
                ),
                "mlflow_tracking": MlflowTrackingResource(
                    mlflow_tracking_uri=f"sqlite:///{work / 'mlflow.db'}"
                ),
                "model_registry": ModelRegistryResource(
                    tracking_uri=f"sqlite:///{work / 'mlflow.db'}"
                ),
                "model_settings": ModelSettingsResource(),
                "serving": ServingSettingsResource(),
                "plausible_time": PlausibleTimeResource(),
            }
        )
        overrides = {
            "concurrency": {"pools": {"default_limit": 1}},
            "telemetry": {"enabled": False},
        }
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

        con = duckdb.connect(str(work / "hot.duckdb"), read_only=True)
        stored = con.execute("SELECT count(*) FROM flows").fetchone()[0]
        con.close()
        if stored != sent:
            sys.exit(f"stored {stored} flows of {sent} produced")
    rate = sent / ingest_s
    print(
        f"ingest job end to end [{args.client}]: {sent} flows in {ingest_s:.2f} s "
        f"({stats.ingest_runs} ingest runs of <= {args.max_batch_records})"
    )
    print("inside the job: " + ", ".join(f"{k} {v:.2f} s" for k, v in breakdown.items()))
    fixed = (ingest_s - sum(breakdown.values())) / stats.ingest_runs
    print(
        f"outside the batch work: {fixed:.2f} s per run (Dagster run and step machinery, "
        "sensor tick, Kafka client setup, DuckDB checkpoint and checks)"
    )
    print(f"cold partitions rebuilt from landing: {cold.cold_runs} runs in {cold_s:.2f} s")
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)
    print(f"ingest[{args.client}]: {rate:,.0f} flows/s, {rate / raw_rate:.2f}x raw consume")


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    main()
