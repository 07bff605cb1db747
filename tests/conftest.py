"""Real services for every level of the tests, started on loopback: the Kafka-protocol
broker, moto's S3, an MLflow server, a Dagster instance with the ingest lanes' limits."""

import os
import uuid

import pytest
from dagster import DagsterInstance

from nids_devkit.broker import create_topic, free_port, start_broker
from nids_devkit.mlflow_server import start_mlflow

os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
# The platform's model-signing key for the suite's processes (a deployment's comes from its
# secret store): every version the tests train is signed with it.
os.environ.setdefault("NIDS_MODEL_SIGNING_KEY", f"test-suite-{uuid.uuid4().hex}")

# xdist groups: one per test file (its module fixtures are built once, on one worker),
# except that the daemon's timed stream (produce->prediction latency under the daemon) runs
# on the worker of the model's trainings, after or before them, never beside them: on two
# cores a training beside it starves the scoring run's start and fails its latency bound.
SHARED_GROUPS = {"test_daemon": "daemon-and-training", "test_model": "daemon-and-training"}


def _group(item) -> str:
    module = item.module.__name__.rsplit(".", 1)[-1]
    return SHARED_GROUPS.get(module, module)


def _longest_first(item) -> int:
    """Workers take groups in collection order, whole: the long ones (the daemon and the
    trainings, then the end-to-end files, then the assets) go first, so no worker is left
    with a long file at the end while the other idles."""
    if _group(item) == "daemon-and-training":
        return 0
    path = item.path.as_posix()
    return 1 if "/tests/e2e/" in path else 2 if "/tests/assets/" in path else 3


def pytest_collection_modifyitems(config, items):
    items.sort(key=_longest_first)  # stable: a file's tests keep their order
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))


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
        overrides={
            "concurrency": {
                "pools": {"default_limit": 1},
                "runs": {
                    "tag_concurrency_limits": [
                        {
                            "key": "nids/ingest_lane",
                            "value": {"applyLimitPerUniqueValue": True},
                            "limit": 1,
                        }
                    ]
                },
            },
            "telemetry": {"enabled": False},
        },
    ) as inst:
        yield inst


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    with start_mlflow(root, log_path=root / "server.log") as server:
        yield server
