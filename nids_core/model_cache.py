"""The serving model: alias `champion`, resolved on every call, loaded once per version.

A version is downloaded once into a local cache directory (atomically, so a crash never
leaves a half model) and kept in memory per process, so a scoring run reloads only when
the champion moved.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path

import mlflow

from nids_core.gnn import FlowScorer
from nids_core.model_names import CHAMPION
from nids_core.model_registry import ModelRegistry, load_scorer

_MEMORY: dict[tuple[str, str, str], FlowScorer] = {}
_LOCK = threading.Lock()


class NoChampion(LookupError):
    """No model version carries alias `champion`: nothing may be scored."""


def champion_scorer(registry: ModelRegistry, cache_dir: str | Path) -> tuple[str, FlowScorer]:
    """(version, scorer) of the current champion."""
    mv = registry.version_by_alias(CHAMPION)
    if mv is None:
        raise NoChampion(
            f"registered model {registry.model_name!r} at {registry.tracking_uri} has no "
            f"`{CHAMPION}` alias: train and promote a model first (materialize training_set, "
            "gnn_model and champion_model, or run training_job). No predictions are written "
            "without one."
        )
    return str(mv.version), load_version(registry, str(mv.version), cache_dir)


def load_version(registry: ModelRegistry, version: str, cache_dir: str | Path) -> FlowScorer:
    key = (registry.tracking_uri, registry.model_name, str(version))
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        local = Path(cache_dir) / registry.model_name / str(version)
        if not (local / "MLmodel").exists():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=local.parent))
            try:
                mlflow.artifacts.download_artifacts(
                    artifact_uri=registry.uri(str(version)),
                    dst_path=str(tmp),
                    tracking_uri=registry.tracking_uri,
                )
                if local.exists():
                    shutil.rmtree(local)
                tmp.rename(local)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        scorer = load_scorer(str(local))
        _MEMORY[key] = scorer
        return scorer
