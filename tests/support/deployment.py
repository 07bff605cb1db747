"""Helpers shared by the tests and the scripts they start: where the data is, and the
resources of one test deployment (real broker, stores and MLflow on loopback)."""

import os
from pathlib import Path

import pytest

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

ROOT = Path(__file__).resolve().parents[2]  # the repository
FIXTURES = ROOT / "tests" / "fixtures"
SHARED_DATA = ROOT.parent / "shared" / "data"


def data_dir() -> Path:
    if os.environ.get("NIDS_DATA_DIR"):
        return Path(os.environ["NIDS_DATA_DIR"])
    local = ROOT / "data"
    return local if local.is_dir() else SHARED_DATA


def iot23(name: str) -> Path:
    path = data_dir() / "iot23" / name
    if not path.exists():
        pytest.skip(f"IoT-23 capture {name} not in the data directory")
    return path


def data_file(relative: str) -> Path:
    """A labelled capture of the data directory (`stratosphere-botnet-4/...`)."""
    path = data_dir() / relative
    if not path.exists():
        pytest.skip(f"{relative} not in the data directory")
    return path


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
    max_file_mb=512,
    hot_store=None,
    **kafka_kw,
):
    cold_store = ColdStoreResource(url=cold_url or str(tmp_path / "cold"))
    return {
        "reference_corpus": ReferenceCorpusResource(
            locations=[str(p) for p in reference or []],
            include_data_dir=False,
            max_file_mb=max_file_mb,
            cold_store=cold_store,
        ),
        "serving": ServingSettingsResource(
            **{
                "alert_outbox_path": str(tmp_path / "alert-outbox.sqlite"),
                "alerts_dir": str(tmp_path / "alerts"),
                **(serving or {}),
            }
        ),
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
        "hot_store": hot_store or HotStoreResource(database=str(tmp_path / "hot.duckdb")),
        "cold_store": cold_store,
        "plausible_time": PlausibleTimeResource(),
    }
