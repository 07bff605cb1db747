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
from tests.ingest_helpers import replay
from tests.model_helpers import read_reference_corpus
from tests.resources import iot23, make_resources

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
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
    }
    assert set(env) <= known, set(env) - known
    # Secrets are interpolated from the environment / .env, never written in the file.
    for name in ("AWS_SECRET_ACCESS_KEY", "DAGSTER_PG_PASSWORD"):
        assert env[name].startswith("${"), name
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${")
    volumes = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    for local in (v for v in volumes if v.startswith("./")):
        assert (DEPLOY / local).exists(), local


def test_helm_values_and_instance_yaml_are_consistent():
    values = yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "nids_jobs.definitions"]
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    assert instance["run_queue"]["dequeue_interval_seconds"] == 1
    limits = instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert queued["tagConcurrencyLimits"] == limits
    lane = {"key": "nids/ingest_lane", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    assert lane in limits  # a partition's queued range starts after the run ahead of it
    assert instance["concurrency"]["pools"]["default_limit"] == 1
    assert set(instance["storage"]["postgres"]["postgres_db"]["password"]) == {"env"}


@pytest.fixture
def pg_databases():
    names = {kind: f"nids_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("dagster", "mlflow")}
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


@pytest.mark.slow
def test_ingest_and_training_jobs_on_postgres(broker, topic, tmp_path, pg_databases, monkeypatch):
    """Dagster's run, event and schedule storage from deploy/dagster.yaml on PostgreSQL, and
    an MLflow server whose backend store is PostgreSQL."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    for var, value in {
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_PORT": str(PG["port"]),
        "DAGSTER_PG_DB": pg_databases["dagster"],
        "DAGSTER_PG_USER": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
    }.items():
        monkeypatch.setenv(var, value)
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
