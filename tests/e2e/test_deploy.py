"""The production profile: compose and Helm structure, and the jobs on PostgreSQL."""

import os
import shutil
import uuid
from pathlib import Path

import polars as pl
import psycopg2
import pytest
import yaml
from dagster import AssetKey, DagsterInstance

from nids_cli.driver import drain
from nids_core.registry.versions import ModelRegistry
from nids_devkit.mlflow_server import start_mlflow
from nids_jobs.definitions import build_definitions
from nids_resources.from_env import all_settings
from tests.support.deployment import ROOT, iot23, make_resources
from tests.support.ingest import replay
from tests.support.model import read_reference_corpus

DEPLOY = ROOT / "deploy"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}


def test_compose_file_describes_the_whole_stack():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {
        "kafka",
        "minio",
        "minio-init",
        "postgres",
        "mlflow",
        "hot-init",
        "code",
        "webserver",
        "daemon",
    }
    kafka = services["kafka"]["environment"]
    assert "controller" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert not any("zookeeper" in name for name in services)
    assert "postgresql+psycopg2://" in services["mlflow"]["command"]
    assert "--artifacts-destination s3://" in services["mlflow"]["command"]
    assert "nids_jobs.definitions" in services["code"]["command"]
    assert services["webserver"]["command"].startswith("dagster-webserver")
    assert services["daemon"]["command"].startswith("dagster-daemon run")
    env = services["code"]["environment"]
    assert env == services["daemon"]["environment"] == services["webserver"]["environment"]
    known = {row.variable for row in all_settings()} | {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_USER",
        "DAGSTER_PG_PASSWORD",
        "PGPASSWORD",  # libpq's own: the DuckLake catalog's password
    }
    assert set(env) <= known, set(env) - known
    # Secrets are interpolated from the environment / .env, never written in the file.
    for name in (
        "AWS_SECRET_ACCESS_KEY",
        "DAGSTER_PG_PASSWORD",
        "PGPASSWORD",
        "NIDS_MODEL_SIGNING_KEY",
    ):
        assert env[name].startswith("${"), name
    # Issue 25: UI, MLflow, Kafka and MinIO have no authentication here: nothing is
    # published beyond loopback (deploy/README.md says how to put authentication in front).
    published = [port for svc in services.values() for port in svc.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published), published
    assert "NIDS_MODEL_SIGNING_KEY" not in str(services["mlflow"])
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    volumes = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    for local in (v for v in volumes if v.startswith("./")):
        assert (DEPLOY / local).exists(), local


def test_helm_values_and_instance_yaml_are_consistent():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "nids_jobs.definitions"]
    # The hot store is a DuckLake: its writers are not serialised in the duckdb pool, and
    # no run pod mounts a volume (a pod of any node can run any run).
    assert values["concurrency"]["pools"]["defaultLimit"] == 8
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    assert env["NIDS_HOT_STORE"] == "ducklake" and "NIDS_DUCKDB_PATH" not in env
    assert "volumes" not in deployment and "volumes" not in str(values["runLauncher"])
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["run_queue"]["dequeue_interval_seconds"] == 1
    limits = instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert queued["tagConcurrencyLimits"] == limits
    lane = {"key": "nids/ingest_lane", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    assert lane in limits  # a partition's queued range starts after the run ahead of it
    assert instance["concurrency"]["pools"]["default_limit"] == 8
    assert set(instance["storage"]["postgres"]["postgres_db"]["password"]) == {"env"}


def _lake_env(database: str, bucket: str, endpoint: str) -> dict[str, str]:
    """The production profile's hot store: a DuckLake, catalog in PostgreSQL, data on S3."""
    return {
        "NIDS_HOT_STORE": "ducklake",
        "NIDS_DUCKLAKE_CATALOG": f"host={PG['host']} port={PG['port']} user={PG['user']} "
        f"dbname={database}",
        "NIDS_DUCKLAKE_DATA_PATH": f"s3://{bucket}/hot",
        "NIDS_S3_ENDPOINT_URL": endpoint,
        "AWS_REGION": "us-east-1",
    }


def _lake_store(env: dict[str, str]):
    from nids_resources.from_env import hot_store_from_env

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return hot_store_from_env()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


@pytest.fixture
def pg_databases():
    names = {kind: f"nids_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("dagster", "mlflow", "hot")}
    con = psycopg2.connect(dbname="postgres", **PG)
    con.autocommit = True
    with con.cursor() as cur:
        for name in names.values():
            cur.execute(f'CREATE DATABASE "{name}"')
    yield names
    with con.cursor() as cur:
        for name in names.values():
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    con.close()


def _production_instance(home: Path, database: str, monkeypatch) -> None:
    """deploy/dagster.yaml in `home`, its PostgreSQL settings in the environment."""
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for var, value in {
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_DB": database,
        "DAGSTER_PG_USER": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
    }.items():
        monkeypatch.setenv(var, value)


@pytest.mark.slow
def test_ingest_and_training_jobs_on_postgres(
    broker, topic, tmp_path, pg_databases, monkeypatch, s3_endpoint, s3_bucket
):
    """Dagster's run, event and schedule storage from deploy/dagster.yaml on PostgreSQL, an
    MLflow server whose backend store is PostgreSQL, and the hot store on DuckLake (catalog
    in PostgreSQL, data on S3): ingest, training, scoring and alerts."""
    hot_store = _lake_store(_lake_env(pg_databases["hot"], s3_bucket, s3_endpoint))
    home = tmp_path / "dagster_home"
    _production_instance(home, pg_databases["dagster"], monkeypatch)
    backend = (
        f"postgresql+psycopg2://{PG['user']}@{PG['host']}:{PG['port']}/{pg_databases['mlflow']}"
    )
    with (
        start_mlflow(tmp_path / "mlflow", backend_store_uri=backend) as server,
        DagsterInstance.from_config(str(home)) as instance,
    ):
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        replay(
            broker,
            topic,
            [iot23(n) for n in ("CTU-Malware-Capture-8-1-labeled.csv.gz",)],
            shift_to_now=True,
            strip_labels=True,
        )
        reference = tmp_path / "reference"
        reference.mkdir()
        shutil.copy(iot23("CTU-Malware-Capture-8-1-labeled.csv.gz"), reference)
        defs = build_definitions(
            make_resources(
                broker,
                topic,
                tmp_path,
                tracking_uri=server.url,
                model_settings={"max_epochs": 40, "patience": 8, "hidden": 32},
                reference=[reference],
                hot_store=hot_store,
            )
        )
        stats = drain(defs, instance, {})
        assert stats.failed_runs == 0 and stats.ingest_runs == 1 and stats.cold_runs >= 1
        read_reference_corpus(defs, instance)
        training = defs.resolve_job_def("training_job").execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert training.success
        assert ModelRegistry(server.url).version_by_alias("champion").version == "1"
        md = instance.get_latest_materialization_event(AssetKey("gnn_model"))
        assert md.asset_materialization.metadata["gate"].value == "passed"
    # Everything above is in PostgreSQL.
    con = psycopg2.connect(dbname=pg_databases["dagster"], **PG)
    with con.cursor() as cur:
        cur.execute("SELECT count(*) FROM runs")
        assert cur.fetchone()[0] >= 4  # ingest, cold partition(s), reference read, training
    con.close()
    con = psycopg2.connect(dbname=pg_databases["mlflow"], **PG)
    with con.cursor() as cur:
        cur.execute("SELECT count(*) FROM model_versions")
        assert cur.fetchone()[0] == 1
    con.close()
    assert os.environ["DAGSTER_PG_DB"] == pg_databases["dagster"]
    assert pl.read_parquet(tmp_path / "cold" / "flows" / "*" / "*.parquet").height == 10403
    # The hot tables are on the lake, and no DuckDB file was made.
    with hot_store.backend().connect(read_only=True) as con:
        assert con.execute("SELECT count(*), count(DISTINCT uid) FROM flows").fetchone() == (
            10403,
            10403,
        )
    assert not list(tmp_path.glob("*.duckdb"))


@pytest.mark.slow
def test_run_retries_beside_the_sensors_re_requests_double_and_lose_nothing_on_postgres(
    broker, topic, tmp_path, pg_databases, monkeypatch, s3_endpoint, s3_bucket
):
    """The production profile (deploy/dagster.yaml on PostgreSQL, the hot store on DuckLake)
    under the real daemon: a
    batch fails (its landing zone unwritable), Dagster's run retries (max 2) re-run it while
    kafka_ingest_sensor re-requests the same range after its backoff; once the fault is
    gone every record is stored once and the offset committed exactly at the end."""
    import time

    from dagster import DagsterRunStatus, RunsFilter

    from nids_cli.local_daemon import embedded_env, start_daemon, stop_daemon
    from nids_core.kafka.log import KafkaSettings, open_client
    from nids_core.stores.hot import read_only_query

    dagster_home = tmp_path / "dagster"
    _production_instance(dagster_home, pg_databases["dagster"], monkeypatch)
    stats = replay(broker, topic, [iot23("CTU-Honeypot-Capture-7-1-labeled.csv.gz")])
    landing = tmp_path / "cold" / "landing"
    landing.parent.mkdir()
    landing.write_text("a file where the landing folder should be")  # every landing fails
    env = embedded_env(
        tmp_path,
        broker.bootstrap_servers,
        NIDS_KAFKA_TOPIC=topic,
        NIDS_KAFKA_GROUP=f"nids-etl-{topic}",
        NIDS_REFERENCE_DATA_DIR="false",
        **_lake_env(pg_databases["hot"], s3_bucket, s3_endpoint),
    )
    daemon = start_daemon(env, tmp_path / "daemon.log")
    instance = DagsterInstance.from_config(str(dagster_home))
    settings = KafkaSettings(broker.bootstrap_servers, f"nids-etl-{topic}")

    def ingest_runs(**kw):
        return instance.get_runs(RunsFilter(job_name="ingest_job", **kw))

    try:
        deadline = time.time() + 240
        # Both paths back to the batch: a Dagster run retry and the sensor's attempt 2.
        while not (
            any(r.tags.get("dagster/retry_number") for r in ingest_runs())
            and any(r.tags.get("nids/attempt") == "2" for r in ingest_runs())
        ):
            assert time.time() < deadline, [(r.status, r.tags) for r in ingest_runs()]
            assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
            time.sleep(1)
        landing.unlink()  # the fault is gone
        while True:
            with open_client("kafka-python", settings) as client:
                committed = client.committed(topic, [0])[0]
            if committed == stats.sent:
                break
            assert time.time() < deadline, committed
            time.sleep(1)
        # Let whatever is still queued for the range run too: it must change nothing.
        while ingest_runs(statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED]):
            assert time.time() < deadline
            time.sleep(1)
    finally:
        stop_daemon(daemon)
    runs = ingest_runs()
    assert {r.tags["nids/offset_range"] for r in runs} == {f"0-{stats.sent}"}
    assert sum(r.status == DagsterRunStatus.FAILURE for r in runs) >= 2
    assert any(r.status == DagsterRunStatus.SUCCESS for r in runs)
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    hot = _lake_store(_lake_env(pg_databases["hot"], s3_bucket, s3_endpoint)).backend()
    rows = read_only_query(hot, "SELECT count(*), count(DISTINCT uid) FROM flows")
    assert rows == [(stats.sent, stats.sent)]
    assert not (tmp_path / "nids.duckdb").exists()
    landed = pl.read_parquet(tmp_path / "cold" / "landing" / "date=*" / "*.parquet")
    assert landed.height == landed["offset"].n_unique() == stats.sent
    with open_client("kafka-python", settings) as client:
        assert client.committed(topic, [0])[0] == stats.sent
