"""Helpers for tests that need registered model versions: train on real captures, register,
record the gate result and the artifact checksum, as a training run does."""

from pathlib import Path

import mlflow
import polars as pl

from nids_core.model.splits import time_split
from nids_core.model.training import TrainConfig
from nids_core.registry.runs import train_evaluate_log
from nids_core.registry.versions import ModelRegistry
from nids_core.serving.model_cache import record_artifact_checksum
from nids_core.zeek.files import read_zeek_file
from tests.support.deployment import iot23


def capture_flows(*names: str) -> pl.DataFrame:
    """The captures' flows, time-split per capture."""
    return time_split(pl.concat([read_zeek_file(iot23(n)).flows for n in names]))


def sqlite_store(root: Path, experiment: str) -> str:
    """A local MLflow store (the embedded default's kind) with one experiment."""
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment(experiment, artifact_location=(root / "artifacts").as_uri())
    mlflow.set_tracking_uri(None)
    return uri


def register_trained(
    uri: str, name: str, flows: pl.DataFrame, config: TrainConfig, passed: bool = True
) -> str:
    """Train, log and register a version of `name`; returns the version."""
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(name)
    try:
        with mlflow.start_run():
            run = train_evaluate_log(flows, config, registered_model_name=name)
    finally:
        mlflow.set_tracking_uri(None)
    registry = ModelRegistry(uri, name)
    record_artifact_checksum(registry, run.model_version)
    registry.mark_gate(run.model_version, passed)
    return str(run.model_version)


def read_reference_corpus(defs, instance) -> list[str]:
    """Read every capture of the definitions' reference corpus into the cold store (what
    the reference_corpus_sensor requests), without the first training it would request."""
    captures = [f.capture for f in defs.resources["reference_corpus"].files()]
    instance.add_dynamic_partitions("reference_captures", captures)
    job = defs.resolve_job_def("reference_job")
    for capture in captures:
        assert job.execute_in_process(instance=instance, partition_key=capture).success
    return captures
