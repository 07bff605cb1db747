"""Scoring throughput and end-to-end latency, on real IoT-23 flows.

(a) Scoring throughput, graph construction included: the IoT-23 captures repeated to at
    least 200,000 flows (uids made unique, each pass moved later in time so passes do not
    share graph windows) in a hot DuckDB table, scored by `score_unscored` with a model
    trained here on the same captures.
(c) The pass a following scoring run makes each second late in a graph window: 1,000 new
    flows in a window already holding --window-flows flows (default 900,000: a 15-minute
    window at 1,000 flows/s), scored with the whole window as context.
(b) End-to-end latency at a steady rate, the way users run it: under the real Dagster
    daemon (`dagster-daemon run` on an embedded-default home: queued runs, each launched in
    its own process, sensors at their default intervals), the bundled broker and a local
    MLflow store holding the champion. Once the daemon's first-start runs are done, a
    producer thread sends the captures' flows at --rate flows/s (default 1,000) for
    --seconds (default 120) with their timestamps set to the send time. Latency = predicted_at - send time, for every flow sent.
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
from datetime import timedelta
from pathlib import Path

import duckdb
import mlflow
import numpy as np
import polars as pl
from dagster import AssetKey, DagsterInstance
from run_timeline import failure_reason, ingest_timeline

from nids_cli.local_daemon import (
    embedded_env,
    prediction_latency,
    start_daemon,
    stop_daemon,
    wait_until_idle,
)
from nids_core.kafka import DEFAULT_TOPIC
from nids_core.kafka.log import KafkaSettings, open_producer
from nids_core.model.splits import time_split
from nids_core.model.training import TrainConfig
from nids_core.registry.runs import train_evaluate_log
from nids_core.registry.versions import ModelRegistry
from nids_core.serving.model_cache import record_artifact_checksum
from nids_core.serving.scoring import ScoreCounts, score_unscored
from nids_core.stores.hot import read_only_query, upsert_flows
from nids_core.stores.hot_schema import ensure_schema
from nids_core.training_data.data_dir import find_data_dir, iot23_files
from nids_core.zeek.files import read_zeek_file
from nids_devkit.broker import create_topic, start_broker
from nids_devkit.replay import stream_live


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
            lono=False,  # this bench measures serving, not generalisation
        )
    registry = ModelRegistry(tracking_uri, "nids-gnn")
    record_artifact_checksum(registry, run.model_version)
    registry.mark_gate(run.model_version, True)
    registry.set_challenger(run.model_version)
    registry.promote(run.model_version)
    mlflow.set_tracking_uri(None)
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
    from nids_core.serving.model_cache import load_served

    model = load_served(registry, registry.version_by_alias("challenger").version, work / "cache")
    data = repeated(flows, 200_000).with_columns(
        pl.lit("bench").alias("topic"),
        pl.lit(0, dtype=pl.Int32).alias("partition"),
        pl.int_range(pl.len()).alias("offset"),
    )
    con = duckdb.connect(str(work / "throughput.duckdb"))
    ensure_schema(con)
    upsert_flows(con, data)
    counts = score_unscored(con, model)
    con.close()
    return counts.inserted, counts.seconds


def window_pass(
    flows: pl.DataFrame, registry: ModelRegistry, work: Path, window_flows: int, new: int = 1000
) -> tuple[ScoreCounts, ScoreCounts]:
    """(c) The pass a following scoring run makes each second late in a graph window: `new`
    flows land in a window already holding `window_flows` scored flows (a 15-minute window
    at 1,000 flows/s holds 900,000), all of one network, spread over the window. Returns
    the counts of the pass over the whole window and of the pass over the new flows."""
    from nids_core.model.graph_window import DEFAULT_WINDOW, window_micros
    from nids_core.serving.model_cache import load_served

    model = load_served(registry, registry.version_by_alias("challenger").version, work / "cache")
    window_us = window_micros(model.scorer.window or DEFAULT_WINDOW)
    start_us = (int(time.time() * 1_000_000) // window_us - 96) * window_us  # a day ago
    rows = window_flows + new
    spread = np.sort(np.random.default_rng(0).integers(0, window_us, rows))
    data = (
        repeated(flows, rows)
        .head(rows)
        .with_columns(
            pl.lit(None, dtype=pl.String).alias("capture"),
            pl.from_epoch(pl.Series(start_us + spread), time_unit="us")
            .dt.replace_time_zone("UTC")
            .alias("ts"),
            pl.lit("bench").alias("topic"),
            pl.lit(0, dtype=pl.Int32).alias("partition"),
            pl.int_range(pl.len()).alias("offset"),
        )
    )
    con = duckdb.connect(str(work / "window.duckdb"))
    ensure_schema(con)
    upsert_flows(con, data.head(window_flows))
    first = score_unscored(con, model)
    upsert_flows(con, data.tail(new))
    following = score_unscored(con, model)
    con.close()
    if not following.inserted:
        sys.exit("the following pass scored none of the new flows")
    return first, following


def producer_thread(bootstrap, topic, flows, rate, seconds, sent_log, stop):
    with open_producer("confluent", KafkaSettings(bootstrap, "bench-producer")) as producer:
        stream_live(
            producer,
            topic,
            flows,
            rate,
            seconds,
            lambda uids, t: sent_log.append((uids, t)),
            stop.is_set,
        )


def end_to_end(flows, work, rate, seconds):
    home = work / "stack"
    with start_broker() as broker:
        topic = DEFAULT_TOPIC
        create_topic(broker.bootstrap_servers, topic, 1)
        env = embedded_env(home, broker.bootstrap_servers, NIDS_KAFKA_TOPIC=topic)
        daemon = start_daemon(env, work / "daemon.log")
        hot = Path(env["NIDS_DUCKDB_PATH"])
        try:
            # A new deployment's first runs (the reference corpus, one run per capture)
            # happen once, at install; the stream starts when they are done, so the
            # latency measured is that of a running deployment.
            started = time.monotonic()
            if not wait_until_idle(env["DAGSTER_HOME"], timeout_s=300, quiet_s=15):
                sys.exit("the daemon's first-start runs did not finish within 300 s")
            print(f"    first-start runs done {time.monotonic() - started - 15:.0f} s after start")
            sent_log: list = []
            stop = threading.Event()
            producer = threading.Thread(
                target=producer_thread,
                args=(broker.bootstrap_servers, topic, flows, rate, seconds, sent_log, stop),
            )
            producer.start()
            producer.join()
            sent = sum(len(u) for u, _ in sent_log)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if (
                    hot.exists()
                    and read_only_query(hot, "SELECT count(*) FROM predictions")[0][0] >= sent
                ):
                    break
                time.sleep(2)
            wait_until_idle(env["DAGSTER_HOME"], timeout_s=120)  # not killed by the shutdown
        finally:
            stop_daemon(daemon)
        with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            records = instance.get_run_records(limit=10_000)
            for r in records:
                if r.dagster_run.status.value == "FAILURE":
                    failure = failure_reason(instance, r.dagster_run.run_id)
                    print(f"    failed run: {r.dagster_run.job_name}: {failure[:200]}")
            first = min(r.start_time for r in records if r.start_time)
            for r in instance.fetch_materializations(
                AssetKey("flow_predictions"), limit=10_000, ascending=True
            ).records:
                md = r.asset_materialization.metadata
                run = instance.get_run_record_by_id(r.run_id)
                if "stopped" in md and run and run.start_time:
                    print(
                        f"    scoring run from {run.start_time - first:.0f} s to "
                        f"{run.end_time - first:.0f} s: {md['passes'].value} passes, "
                        f"stopped: {md['stopped'].value}"
                    )
            alert_runs = sum(r.dagster_run.job_name == "alerts_job" for r in records)
        print(f"    alerts_job runs (attack-rate onsets): {alert_runs}")
        print(f"    {ingest_timeline(records)}")
        runs = {
            "ingest": sum(r.dagster_run.job_name == "ingest_job" for r in records),
            "scoring": sum(r.dagster_run.job_name == "scoring_job" for r in records),
            "failed": sum(r.dagster_run.status.value == "FAILURE" for r in records),
        }
        joined = prediction_latency(sent_log, hot)
    missing = joined["predicted_at"].null_count()
    latency = (joined["predicted_at"] - joined["sent_at"]).drop_nulls().to_numpy()
    return joined.height, missing, latency, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=1000, help="flows/s for the latency run")
    ap.add_argument("--seconds", type=int, default=120, help="length of the latency run")
    ap.add_argument(
        "--window-flows",
        type=int,
        default=900_000,
        help="flows already in the graph window for (c) (0: skip; 900,000 = 15 min at 1,000/s)",
    )
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nids-bench-inference-"))
    try:
        flows = load_flows()
        t0 = time.perf_counter()
        (work / "stack" / "mlflow").mkdir(parents=True)
        registry = train_champion(
            flows, f"sqlite:///{work / 'stack' / 'mlflow' / 'mlflow.db'}", work
        )
        print(f"trained and registered a champion in {time.perf_counter() - t0:.1f} s")
        n, secs = throughput(flows, registry, work)
        rate = n / secs
        print(f"(a) scored {n} flows (graph construction included) in {secs:.2f} s = {rate:,.0f}/s")
        print(f"    peak RSS so far: {peak_rss_mib():,.0f} MiB")
        if args.window_flows:
            whole, following = window_pass(flows, registry, work, args.window_flows)
            print(
                f"(c) a following pass: {following.inserted:,} new flows scored among the "
                f"{following.context_flows:,} of their window in {following.seconds:.2f} s "
                f"(the window's first pass: {whole.inserted:,} flows in {whole.seconds:.2f} s)"
            )
            print(f"    peak RSS so far: {peak_rss_mib():,.0f} MiB")
        sent, missing, latency, runs = end_to_end(flows, work, args.rate, args.seconds)
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
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    main()
