"""The model's files: log a scorer with its feature spec, load one, and the checksum that
ties a downloaded copy to what the training run registered.

MLflow records no checksum of a model's files, so registration records one: the digest
of every artifact file, as the model-version tag `nids.artifact_sha256`. A copy is checked
against it before anything in it is unpickled.
"""

from __future__ import annotations

import tempfile
from importlib.metadata import version as dist_version
from pathlib import Path

import mlflow

from nids_core.checksum import folder_sha256
from nids_core.model.gnn import FlowScorer

SPEC_FILE = "feature_spec.json"


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


def artifact_digest(model_dir: str | Path) -> str:
    """SHA-256 over every file of a model directory (relative path and content)."""
    return folder_sha256(model_dir)


def load_scorer(model_dir: str | Path) -> FlowScorer:
    """Load a logged scorer from a local model directory (verified by the caller)."""
    scorer = mlflow.pytorch.load_model(str(model_dir))
    if not isinstance(scorer, FlowScorer):
        raise TypeError(f"{model_dir} holds a {type(scorer).__name__}, not a FlowScorer")
    scorer.eval()
    return scorer
