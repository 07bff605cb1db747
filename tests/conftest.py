"""Real services for the tests, started on loopback: the Kafka-protocol broker, moto's S3."""

import os
import uuid
from pathlib import Path

import pytest
from dagster import DagsterInstance

from nids_core.local_broker import create_topic, free_port, start_broker
from nids_core.local_mlflow import start_mlflow
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

FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")


def data_dir() -> Path:
    if os.environ.get("NIDS_DATA_DIR"):
        return Path(os.environ["NIDS_DATA_DIR"])
    local = Path(__file__).resolve().parents[1] / "data"
    return local if local.is_dir() else SHARED_DATA


def iot23(name: str) -> Path:
    path = data_dir() / "iot23" / name
    if not path.exists():
        pytest.skip(f"IoT-23 capture {name} not in the data directory")
    return path


@pytest.fixture(scope="session")
def broker():
    with start_broker() as b:
        yield b


@pytest.fixture
def topic(broker):
    name = f"zeek.conn.{uuid.uuid4().hex[:8]}"
    create_topic(broker.bootstrap_servers, name, 1)
    return name


@pytest.fixture(scope="session")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"nids-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    with DagsterInstance.local_temp(
        tempdir=str(home),
        overrides={"concurrency": {"pools": {"default_limit": 1}}, "telemetry": {"enabled": False}},
    ) as inst:
        yield inst


@pytest.fixture(params=["kafka-python", "confluent"])
def client_name(request):
    return request.param


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with start_mlflow(root, log_path=root / "server.log") as server:
        yield server


def model_resources(tracking_uri: str, model_name: str, **settings) -> dict:
    return {
        "mlflow_tracking": MlflowTrackingResource(
            experiment_name=model_name, mlflow_tracking_uri=tracking_uri
        ),
        "model_registry": ModelRegistryResource(tracking_uri=tracking_uri, model_name=model_name),
        "model_settings": ModelSettingsResource(**settings),
    }


def make_resources(
    broker,
    topic,
    tmp_path,
    client="kafka-python",
    cold_url=None,
    tracking_uri=None,
    model_name="nids-gnn",
    model_settings=None,
    serving=None,
    reference=None,
    **kafka_kw,
):
    cold_store = ColdStoreResource(url=cold_url or str(tmp_path / "cold"))
    return {
        "reference_corpus": ReferenceCorpusResource(
            locations=[str(p) for p in reference or []], cold_store=cold_store
        ),
        "serving": ServingSettingsResource(**(serving or {})),
        **model_resources(
            tracking_uri or f"sqlite:///{tmp_path / 'mlflow.db'}",
            model_name,
            **(model_settings or {}),
        ),
        "kafka": KafkaResource(
            bootstrap_servers=broker.bootstrap_servers,
            topic=topic,
            group_id=f"nids-etl-{topic}",
            client=client,
            request_timeout_s=5,
            read_timeout_s=20,
            **kafka_kw,
        ),
        "hot_store": HotStoreResource(database=str(tmp_path / "hot.duckdb")),
        "cold_store": cold_store,
        "plausible_time": PlausibleTimeResource(),
    }


@pytest.fixture
def make_defs(broker, topic, tmp_path):
    def _make(**kw):
        return build_definitions(make_resources(broker, topic, tmp_path, **kw))

    return _make
