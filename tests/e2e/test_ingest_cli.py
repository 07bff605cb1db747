"""`nids ingest --until-idle`, the daemon's ingest loop in one process: it drains the topic
and exits 0 once caught up, and a run left "started" by an ingest process that was killed
mid-batch is failed and its batch taken up by the next one."""

import contextlib
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from nids_cli.local_daemon import embedded_env
from nids_core.kafka.log import KafkaSettings, open_client
from nids_core.stores.hot import read_only_query
from nids_resources.run_worker import WORKER_TAG
from tests.support.deployment import iot23
from tests.support.ingest import replay

NIDS = str(Path(sys.executable).parent / "nids")


@pytest.mark.slow
def test_a_killed_ingest_process_mid_batch_is_recovered_by_the_next_one(broker, topic, tmp_path):
    stats = replay(broker, topic, [iot23("CTU-Malware-Capture-34-1.conn.log.labeled.gz")], repeat=4)
    # Ranges of 20,000 records: the first process runs several batches, so one of its runs
    # is in flight to be killed even when a loaded machine polls slowly.
    env = embedded_env(
        tmp_path,
        broker.bootstrap_servers,
        NIDS_KAFKA_TOPIC=topic,
        NIDS_KAFKA_MAX_BATCH_RECORDS="20000",
    )
    first = subprocess.Popen(
        [NIDS, "ingest", "--until-idle", "--no-cold"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    victim = instance = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
        if instance is None:
            # Open the instance only once the first process has created its storages and
            # recorded a run: two processes creating a fresh SQLite storage at once can
            # both stamp its schema version (alembic then sees two heads).
            if not _has_a_run(Path(env["DAGSTER_HOME"]) / "history" / "runs.db"):
                continue
            instance = DagsterInstance.from_config(env["DAGSTER_HOME"])
        for record in instance.get_run_records(
            RunsFilter(job_name="ingest_job", statuses=[DagsterRunStatus.STARTED])
        ):
            if record.dagster_run.tags.get(WORKER_TAG, "").split("/")[-2:-1] == [str(first.pid)]:
                victim = record.dagster_run
    assert victim is not None, first.communicate()[0].decode()[-2000:]
    first.send_signal(signal.SIGKILL)  # mid-batch: the run's process is gone
    first.wait(30)
    assert instance.get_run_by_id(victim.run_id).status == DagsterRunStatus.STARTED

    second = _nids(env, "ingest", "--until-idle", "--timeout", "180")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "caught up: lag 0 on every partition" in second.stdout
    dead = instance.get_run_by_id(victim.run_id)
    assert dead.status == DagsterRunStatus.FAILURE
    assert any("is gone" in (e.message or "") for e in instance.all_logs(victim.run_id))
    with open_client("kafka-python", KafkaSettings(broker.bootstrap_servers, "nids-etl")) as c:
        assert c.committed(topic, [0])[0] == stats.sent
    ((stored, uids, quarantined),) = read_only_query(
        env["NIDS_DUCKDB_PATH"],
        "SELECT count(*), count(DISTINCT uid), (SELECT count(*) FROM quarantine) FROM flows",
    )
    assert stored == uids and stored + quarantined == stats.sent


def test_until_idle_gives_up_at_its_timeout_and_says_why_when_kafka_is_down(tmp_path):
    from nids_devkit.broker import start_broker

    down = start_broker()
    down.stop()
    env = embedded_env(tmp_path, down.bootstrap_servers, NIDS_KAFKA_TOPIC="zeek.conn")
    result = _nids(env, "ingest", "--until-idle", "--timeout", "3")
    assert result.returncode == 1
    assert f"Kafka unreachable at {down.bootstrap_servers}" in result.stdout
    assert "timed out after 3 s" in result.stdout


def _has_a_run(runs_db: Path) -> bool:
    """Whether the SQLite run storage exists and holds a run (read-only, never creating)."""
    if not runs_db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{runs_db}?mode=ro", uri=True)) as con:
            return con.execute("SELECT count(*) FROM runs").fetchone()[0] > 0
    except sqlite3.Error:  # being created
        return False


def _nids(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([NIDS, *args], env=env, capture_output=True, text=True, timeout=300)


def test_replay_fails_and_says_how_many_were_acknowledged_when_the_broker_goes(tmp_path):
    """Issue 25: `nids replay` said "replayed 4000 flows" and exited 0 when the broker
    died 12 s into the replay. It exits non-zero, saying how many flows the broker
    acknowledged before it went."""
    from nids_devkit.broker import create_topic, start_broker

    capture = iot23("CTU-Malware-Capture-34-1.conn.log.labeled.gz")  # 23,145 flows
    with start_broker() as doomed:
        create_topic(doomed.bootstrap_servers, "zeek.conn", 1)
        args = ["--bootstrap", doomed.bootstrap_servers, "--rate", "1500"]
        args += ["--delivery-timeout", "4"]
        replay = subprocess.Popen(
            [NIDS, "replay", *args, str(capture)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        settings = KafkaSettings(doomed.bootstrap_servers, "probe")
        deadline = time.time() + 60
        with open_client("kafka-python", settings) as probe:
            # Into the replay (about 15 s at this rate): some flows are in the topic.
            while probe.watermarks("zeek.conn", [0])[0].high < 3000 and time.time() < deadline:
                time.sleep(0.2)
        assert replay.poll() is None
        doomed.stop()
        out, _ = replay.communicate(timeout=120)
    assert replay.returncode == 1, out
    match = re.search(r"failed: (\d+) of (\d+) flows sent were acknowledged by the broker", out)
    assert match, out
    acked, sent = int(match.group(1)), int(match.group(2))
    assert 0 < acked < sent <= 23_145
    assert "replayed" not in out
