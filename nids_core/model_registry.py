"""The model in MLflow: log a scorer with its feature spec, register versions of
`nids-gnn`, and move the `challenger` / `champion` aliases (stages are deprecated in
MLflow 3). Plain MLflow, no Dagster, so the CLI's rollback and the tests use it too."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version as dist_version
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from nids_core.gnn import FlowScorer
from nids_core.model_names import CHALLENGER, CHAMPION, MODEL_NAME

SPEC_FILE = "feature_spec.json"
GATE_TAG = "nids.gate"
PREVIOUS_CHAMPION_TAG = "nids.previous_champion"


def _requirements() -> list[str]:
    pins = ["torch", "torch-geometric", "polars", "numpy", "scikit-learn"]
    return [f"{name}=={dist_version(name).split('+')[0]}" for name in pins]


def log_scorer(scorer: FlowScorer, registered_model_name: str | None = None):
    """Log the scorer to the active MLflow run (pickle serialization, feature spec beside
    it as `feature_spec.json`); returns MLflow's ModelInfo."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / SPEC_FILE
        spec_path.write_text(scorer.spec.to_json())
        return mlflow.pytorch.log_model(
            scorer,
            name="model",
            serialization_format="pickle",
            extra_files=[str(spec_path)],
            pip_requirements=_requirements(),
            registered_model_name=registered_model_name,
            await_registration_for=60,
        )


def load_scorer(model_uri: str) -> FlowScorer:
    """Load a logged scorer, e.g. `models:/nids-gnn@champion` or a local model directory."""
    scorer = mlflow.pytorch.load_model(model_uri)
    if not isinstance(scorer, FlowScorer):
        raise TypeError(f"{model_uri} is a {type(scorer).__name__}, not a FlowScorer")
    scorer.eval()
    return scorer


@dataclass(frozen=True)
class Promotion:
    version: str
    previous: str | None


class ModelRegistry:
    """Versions and aliases of one registered model."""

    def __init__(self, tracking_uri: str, model_name: str = MODEL_NAME):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    def version_by_alias(self, alias: str) -> ModelVersion | None:
        try:
            return self.client.get_model_version_by_alias(self.model_name, alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def uri(self, alias_or_version: str | int) -> str:
        # A file/SQLite store hands versions back as int, a tracking server as str.
        alias_or_version = str(alias_or_version)
        sep = "/" if alias_or_version.isdigit() else "@"
        return f"models:/{self.model_name}{sep}{alias_or_version}"

    def load(self, alias_or_version: str) -> FlowScorer:
        """Download a version (by alias or number) from this registry and load it."""
        with tempfile.TemporaryDirectory() as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=self.uri(alias_or_version),
                dst_path=tmp,
                tracking_uri=self.tracking_uri,
            )
            return load_scorer(local)

    def set_challenger(self, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, CHALLENGER, version)

    def mark_gate(self, version: str, passed: bool) -> None:
        self.client.set_model_version_tag(
            self.model_name, version, GATE_TAG, "passed" if passed else "failed"
        )

    def promote(self, version: str) -> Promotion:
        """Point `champion` at `version`, which must have passed the gate. The previous
        champion keeps its version and is tagged as superseded; the new one records it."""
        mv = self.client.get_model_version(self.model_name, version)
        if mv.tags.get(GATE_TAG) != "passed":
            raise PermissionError(
                f"{self.model_name} version {version} has not passed the promotion gate "
                f"(tag {GATE_TAG}={mv.tags.get(GATE_TAG)!r}); refusing to make it champion"
            )
        version = str(version)
        current = self.version_by_alias(CHAMPION)
        previous = str(current.version) if current is not None else None
        if previous == version:
            return Promotion(str(version), None)
        now = datetime.now(UTC).isoformat()
        if previous is not None:
            self.client.set_model_version_tag(
                self.model_name, previous, "nids.superseded_by", version
            )
            self.client.set_model_version_tag(self.model_name, previous, "nids.retired_at", now)
            self.client.set_model_version_tag(
                self.model_name, str(version), PREVIOUS_CHAMPION_TAG, previous
            )
        self.client.set_model_version_tag(self.model_name, str(version), "nids.promoted_at", now)
        self.client.set_registered_model_alias(self.model_name, CHAMPION, str(version))
        return Promotion(str(version), previous)

    def rollback(self, to_version: str | None = None) -> Promotion:
        """Move `champion` back to `to_version`, or to the version it replaced."""
        current = self.version_by_alias(CHAMPION)
        if current is None:
            raise LookupError(f"{self.model_name} has no champion to roll back")
        target = str(to_version or current.tags.get(PREVIOUS_CHAMPION_TAG) or "")
        if not target:
            raise LookupError(
                f"champion version {current.version} replaced no earlier champion; "
                "name a version with --to"
            )
        self.client.get_model_version(self.model_name, target)  # must exist
        self.client.set_registered_model_alias(self.model_name, CHAMPION, target)
        self.client.set_model_version_tag(
            self.model_name,
            str(current.version),
            "nids.rolled_back_at",
            datetime.now(UTC).isoformat(),
        )
        return Promotion(target, str(current.version))
