"""Under the real Dagster daemon (`dagster-daemon run` on a temporary embedded-default
instance, as users run it): a stream that never stops is scored while it runs, a run
whose process is lost with its code server (a lost pod, the OOM killer) does not stop the
partition, a broker restart (its log and the group's offsets lost) does not stop ingestion,
and every operational alert reaches a webhook that fails at first, once."""

import json
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import polars as pl
import psutil
import pytest
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus, RunsFilter

from nids_cli.instance import ensure_instance_yaml
from nids_cli.local_daemon import (
    embedded_env,
    prediction_latency,
    start_daemon,
    stop_daemon,
)
from nids_core.kafka.log import KafkaSettings, open_client, open_producer
from nids_core.model.training import TrainConfig
from nids_core.registry.versions import ModelRegistry
from nids_core.stores.hot import read_only_query
from nids_core.zeek.files import read_zeek_file
from nids_devkit.broker import create_topic, free_port, start_broker
from nids_devkit.replay import stream_live, to_zeek_json
from nids_resources.run_worker import WORKER_TAG
from tests.support.deployment import ROOT, iot23
from tests.support.model import capture_flows, register_trained, sqlite_store

pytestmark = pytest.mark.slow

RATE = 150  # flows per second
STREAM_S = 90
MAX_LATENCY_S = 60
TRAIN_ON = ("CTU-Malware-Capture-8-1-labeled.csv.gz", "CTU-Honeypot-Capture-7-1-labeled.csv.gz")
STREAM_FROM = ("CTU-Malware-Capture-20-1-labeled.csv.gz", "CTU-Honeypot-Capture-5-1-labeled.csv.gz")


def _champion(home) -> None:
    """A champion in the embedded default's MLflow store: a registry is all scoring needs."""
    uri = sqlite_store(home / "mlflow", "nids-gnn")
    config = TrainConfig(max_epochs=30, patience=6, hidden=32)
    version = register_trained(uri, "nids-gnn", capture_flows(*TRAIN_ON), config)
    ModelRegistry(uri, "nids-gnn").promote(version)


def _produce_stream(bootstrap: str, flows: pl.DataFrame, sent: list, stop: threading.Event):
    """RATE flows/s for STREAM_S seconds, each stamped with its send time, labels removed."""
    with open_producer("confluent", KafkaSettings(bootstrap, "stream")) as producer:
        stream_live(
            producer,
            "zeek.conn",
            flows,
            RATE,
            STREAM_S,
            lambda uids, t: sent.append((uids, t)),
            stop.is_set,
            strip_labels=True,
        )


def _predictions_total(instance: DagsterInstance) -> int:
    """The predictions the newest scoring pass left: a following scoring run reports each
    pass as an observation of flow_predictions, and materializes it when it ends."""
    filter_ = AssetRecordsFilter(asset_key=AssetKey("flow_predictions"))
    records = [
        *instance.fetch_materializations(filter_, limit=1, ascending=False).records,
        *instance.fetch_observations(filter_, limit=1, ascending=False).records,
    ]
    if not records:
        return 0
    newest = max(records, key=lambda r: r.storage_id).asset_event
    return int(newest.metadata["predictions_total"].value)


SCORING_MILESTONES = ("RUN_START", "STEP_START", "loaded in", "pass:", "FAILURE", "rror")


def _scoring_timeline(daemon_log: Path, seen: list) -> str:
    """What a failed bound needs to be read: the samples, and when the scoring sensor and
    its runs reached each step (launch, start, model loaded, first passes, failures)."""
    lines = [
        line[:220]
        for line in daemon_log.read_text(errors="replace").splitlines()
        if ("scoring_job" in line and any(m in line for m in SCORING_MILESTONES))
        or "for scoring_sensor" in line
    ]
    passes = [i for i, line in enumerate(lines) if "pass:" in line]
    lines = [line for i, line in enumerate(lines) if i not in passes[3:]]  # the first 3
    samples = ", ".join(f"{n}" for _, n in seen)
    return f"predictions every 10 s: [{samples}]\n" + "\n".join(lines[:40])


def _read(home, sql: str):
    return read_only_query(home / "nids.duckdb", sql)


def _committed(bootstrap: str) -> int | None:
    with open_client("kafka-python", KafkaSettings(bootstrap, "nids-etl")) as client:
        return client.committed("zeek.conn", [0])[0]


class _FlakyWebhook(BaseHTTPRequestHandler):
    """Answers HTTP 500 to the first FAIL_FIRST posts (a sink that is down), then accepts."""

    FAIL_FIRST = 2
    posts = 0
    accepted: ClassVar[list] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).posts += 1
        if type(self).posts <= self.FAIL_FIRST:
            self.send_response(500)
        else:
            type(self).accepted.append(body)
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def _webhook() -> tuple[HTTPServer, str]:
    server = HTTPServer(("127.0.0.1", 0), _FlakyWebhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/hooks/nids"


def _outbox(home) -> list[tuple[str, str, float | None]]:
    with sqlite3.connect(home / "alert-outbox.sqlite") as con:
        return con.execute("SELECT alert_id, kind, delivered_at FROM alert_outbox").fetchall()


def test_stream_is_scored_while_it_runs_and_a_lost_worker_does_not_stop_the_partition(
    tmp_path,
):
    home = tmp_path
    _champion(home)
    flows = pl.concat([read_zeek_file(iot23(n)).flows for n in STREAM_FROM])
    hook, hook_url = _webhook()
    restarted = None
    with start_broker(log_path=home / "broker.log") as broker:
        create_topic(broker.bootstrap_servers, "zeek.conn", 1)
        # The champion is trained above: reading the reference corpus (a one-off at a
        # deployment's start) is not what this test measures.
        env = embedded_env(
            home,
            broker.bootstrap_servers,
            NIDS_REFERENCE_DATA_DIR="false",
            NIDS_ALERT_WEBHOOK_URL=hook_url,
        )
        daemon = start_daemon(env, home / "daemon.log")
        instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        try:
            # ---------------------------------------------- a stream that does not stop
            sent: list = []
            stop = threading.Event()
            producer = threading.Thread(
                target=_produce_stream, args=(broker.bootstrap_servers, flows, sent, stop)
            )
            producer.start()
            seen: list[tuple[float, int]] = []
            while producer.is_alive():
                time.sleep(10)
                seen.append((time.time(), _predictions_total(instance)))
            producer.join()
            stream_end = time.time()
            total = sum(len(uids) for uids, _ in sent)
            assert total == RATE * STREAM_S
            deadline = time.time() + MAX_LATENCY_S + 30
            while _predictions_total(instance) < total and time.time() < deadline:
                time.sleep(3)

            # Predictions grew while the stream ran, not only after it stopped.
            during = [n for t, n in seen if t < stream_end]
            why = _scoring_timeline(home / "daemon.log", seen)
            assert during[len(during) // 2] > 0, why
            assert during[-1] > during[len(during) // 2], why
            assert during[-1] >= total * 0.5, why
            joined = prediction_latency(sent, home / "nids.duckdb")
            assert joined["predicted_at"].null_count() == 0
            latency = joined["predicted_at"] - joined["sent_at"]
            print(
                f"daemon stream: {total} flows at {RATE}/s; produce->prediction p50 "
                f"{latency.median():.1f} s, p95 {latency.quantile(0.95):.1f} s, "
                f"max {latency.max():.1f} s"
            )
            assert latency.max() <= MAX_LATENCY_S

            # ---------------------------------------------- a lost worker mid-batch
            burst = pl.concat(
                flows.with_columns((pl.col("uid") + f"-burst{i}").alias("uid")) for i in range(6)
            ).with_columns(pl.lit(datetime.now(UTC)).alias("ts"))
            with open_producer("confluent", KafkaSettings(broker.bootstrap_servers, "b")) as p:
                p.send_many("zeek.conn", [(None, v) for v in to_zeek_json(burst)])
            victim = None
            deadline = time.time() + 60
            while victim is None and time.time() < deadline:
                for record in instance.get_run_records(
                    RunsFilter(job_name="ingest_job", statuses=[DagsterRunStatus.STARTED])
                ):
                    if record.dagster_run.tags.get(WORKER_TAG):
                        victim = record.dagster_run
                time.sleep(0.05)
            assert victim is not None, "no ingest run started for the burst"
            worker_pid = int(victim.tags[WORKER_TAG].split("/")[-2])
            assert psutil.pid_exists(worker_pid)
            # The pod is lost: the daemon, its code server and the run's process, at once.
            stop_daemon(daemon, kill=True)

            def worker_gone() -> bool:
                try:
                    return psutil.Process(worker_pid).status() == psutil.STATUS_ZOMBIE
                except psutil.NoSuchProcess:
                    return True

            # SIGKILL reaches the group at once but is acted on asynchronously: allow the
            # kernel a moment on a busy machine.
            deadline = time.time() + 10
            while not worker_gone() and time.time() < deadline:
                time.sleep(0.05)
            assert worker_gone()
            assert instance.get_run_by_id(victim.run_id).status == DagsterRunStatus.STARTED
            # It comes back (as a restarted pod would), and the partition recovers by itself.
            daemon = start_daemon(env, home / "daemon.log")
            expected = total + burst.height
            deadline = time.time() + 120
            while time.time() < deadline:
                if _committed(broker.bootstrap_servers) == expected:
                    break
                time.sleep(2)
            assert _committed(broker.bootstrap_servers) == expected
            dead = instance.get_run_by_id(victim.run_id)
            assert dead.status == DagsterRunStatus.FAILURE
            reason = [
                e.message
                for e in instance.all_logs(victim.run_id)
                if "worker process" in (e.message or "")
            ]
            assert reason and "is gone" in reason[0]

            # ---------------------------------------------- the broker restarts, log lost
            # (the bundled broker keeps its log and the group's offsets in memory). The
            # producer pauses longer than several sensor ticks, so the sensor sees the
            # empty log first; issue 25: that stopped ingestion for good.
            broker.stop()
            restarted = start_broker(port=broker.port, log_path=home / "broker.log")
            create_topic(restarted.bootstrap_servers, "zeek.conn", 1)
            time.sleep(8)  # four ticks of kafka_ingest_sensor (every 2 s) on an empty log
            after = flows.head(1500).with_columns(
                (pl.col("uid") + "-after-restart").alias("uid"),
                pl.lit(datetime.now(UTC)).alias("ts"),
            )
            with open_producer("confluent", KafkaSettings(restarted.bootstrap_servers, "a")) as p:
                p.send_many("zeek.conn", [(None, v) for v in to_zeek_json(after)])
            deadline = time.time() + 120
            while _committed(restarted.bootstrap_servers) != after.height:
                assert time.time() < deadline, "records produced after the restart not ingested"
                time.sleep(2)
            expected += after.height
            # ---------------------------------------------- every alert delivered once
            deadline = time.time() + 150
            while any(delivered is None for *_, delivered in _outbox(home)):
                assert time.time() < deadline, _outbox(home)
                time.sleep(3)
        finally:
            stop_daemon(daemon)
            if restarted is not None:
                restarted.stop()
            hook.shutdown()
        assert _read(home, "SELECT count(*), count(DISTINCT uid) FROM flows") == [
            (expected, expected)
        ]
        stored = _outbox(home)
        kinds = {kind for _, kind, _ in stored}
        assert "run_failure" in kinds and "sensor_failing" not in kinds, stored
        assert f"run_failure:{victim.run_id}" in {alert_id for alert_id, *_ in stored}
        # The sink refused the first posts; each alert for the webhook (operational ones and
        # the webhook's copy of each finding) still arrived, and only once; the findings'
        # copies for files and Kafka were delivered there, each once too.
        assert _FlakyWebhook.posts > len(_FlakyWebhook.accepted)
        ids = [body["alert_id"] for body in _FlakyWebhook.accepted]
        other_sinks = ("finding:file", "finding:kafka")
        assert sorted(ids) == sorted(a for a, kind, _ in stored if kind not in other_sinks)
        findings = [a for a, kind, _ in stored if kind == "finding:file"]
        assert findings, "the stream made no alert"
        lines = [
            json.loads(line)
            for path in (home / "alerts").glob("ocsf-*.ndjson")
            for line in path.read_text().splitlines()
        ]
        delivered = [f"file:{f['finding_info']['uid']}:{f['metadata']['sequence']}" for f in lines]
        assert sorted(delivered) == sorted(findings)


def _at(port: int) -> list[str]:
    return ["-h", "127.0.0.1", "-p", str(port)]


def _dagster_dev(env: dict, port: int, log_path) -> subprocess.Popen:
    """`dagster dev` (webserver and daemon) on the home in `env`, as the README runs it."""
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster"), "dev", "-w", "workspace.yaml", *_at(port)],
        cwd=ROOT,
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def test_dagster_dev_started_twice_on_one_home_ingests_every_record_once(tmp_path):
    """An operator starts `dagster dev` a second time on the same home (another terminal,
    another port): two webservers and two daemons on one instance and one DuckDB file.
    Every record is still stored once and the committed offset is exactly the end."""
    flows = read_zeek_file(iot23(STREAM_FROM[0])).flows
    with start_broker(log_path=tmp_path / "broker.log") as broker:
        create_topic(broker.bootstrap_servers, "zeek.conn", 1)
        env = embedded_env(tmp_path, broker.bootstrap_servers, NIDS_REFERENCE_DATA_DIR="false")
        ensure_instance_yaml(Path(env["DAGSTER_HOME"]))
        DagsterInstance.from_config(env["DAGSTER_HOME"]).dispose()  # storage created once
        first = _dagster_dev(env, free_port(), tmp_path / "dev-1.log")
        second = _dagster_dev(env, free_port(), tmp_path / "dev-2.log")
        try:
            with open_producer("confluent", KafkaSettings(broker.bootstrap_servers, "t")) as p:
                p.send_many("zeek.conn", [(None, v) for v in to_zeek_json(flows)])
            deadline = time.time() + 180
            while _committed(broker.bootstrap_servers) != flows.height:
                assert time.time() < deadline, (tmp_path / "dev-2.log").read_text()[-3000:]
                assert first.poll() is None and second.poll() is None
                time.sleep(2)
            time.sleep(6)  # a few more ticks of both daemons: nothing more may land
        finally:
            for dev in (first, second):
                stop_daemon(dev)
        assert _committed(broker.bootstrap_servers) == flows.height
    unique = flows["uid"].n_unique()
    assert _read(tmp_path, "SELECT count(*), count(DISTINCT uid) FROM flows") == [(unique, unique)]
