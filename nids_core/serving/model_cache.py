"""The serving model: alias `champion`, resolved on every call, loaded once per version.

A version is downloaded once into a local cache, keyed by registry, model, version and the
version's run/model identity (so another registry's "version 1" is never served under this
one's), and checked against the checksum its training run recorded before anything in it is
unpickled: a file planted or corrupted in the cache is never loaded. A version whose
checksum and gate verdict the platform did not sign (NIDS_MODEL_SIGNING_KEY) is not even
downloaded: write access to MLflow is not enough to have code run here. The cache folder is
private to its user (0700). Each process keeps loaded versions in memory, so a scoring run
reloads only when the champion moved.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from nids_core.checksum import sha256_hex
from nids_core.model.artifacts import artifact_digest, load_scorer
from nids_core.model.gnn import FlowScorer
from nids_core.registry.versions import ModelRegistry, RegisteredVersion

_MEMORY: dict[tuple[str, ...], FlowScorer] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ServedModel:
    """A registered version ready to score: its version (what `predictions.model_version`
    carries), its scorer, and the gate verdict signed on it (passed, overridden, failed)."""

    version: str
    scorer: FlowScorer
    gate: str

    @property
    def threshold(self) -> float:
        return self.scorer.threshold


class ArtifactMismatch(RuntimeError):
    """A model's files do not match the checksum recorded when it was registered."""


def _digest16(text: str) -> str:
    return sha256_hex(text, 16)


def private_dir(path: str | Path) -> Path:
    """`path`, created if needed, readable and writable by this user only."""
    root = Path(path)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    if root.stat().st_uid == os.getuid() and root.stat().st_mode & 0o077:
        root.chmod(0o700)
    return root


def record_artifact_checksum(registry: ModelRegistry, version: str) -> str:
    """Download a freshly registered version, digest its files and record the digest on the
    version (done by the training run, the writer of the model)."""
    with tempfile.TemporaryDirectory() as tmp:
        digest = artifact_digest(registry.download(version, tmp))
    registry.record_checksum(version, digest)
    return digest


def served_champion(registry: ModelRegistry, cache_dir: str | Path) -> ServedModel:
    """The current champion, if it may be served (see ModelRegistry.servable_champion)."""
    return _served(registry, registry.servable_champion(), cache_dir)


def load_served(registry: ModelRegistry, version: str, cache_dir: str | Path) -> ServedModel:
    """A version with its scorer (see load_version) and its verified gate verdict."""
    return _served(registry, registry.get_version(version), cache_dir)


def _served(registry: ModelRegistry, mv: RegisteredVersion, cache_dir: str | Path) -> ServedModel:
    return ServedModel(mv.version, _load(registry, mv, cache_dir), registry.verified_status(mv))


def load_version(registry: ModelRegistry, version: str, cache_dir: str | Path) -> FlowScorer:
    """A version's scorer, verified against its signed checksum before unpickling."""
    return _load(registry, registry.get_version(version), cache_dir)


def _load(registry: ModelRegistry, mv: RegisteredVersion, cache_dir: str | Path) -> FlowScorer:
    identity = _digest16(f"{mv.run_id}|{mv.source}")
    expected = registry.require_signed(mv)
    key = (registry.tracking_uri, registry.model_name, mv.version, identity, expected)
    with _LOCK:
        if key in _MEMORY:
            return _MEMORY[key]
        root = private_dir(cache_dir)
        local = (
            root
            / _digest16(registry.tracking_uri)
            / registry.model_name
            / f"v{mv.version}-{identity}"
        )
        if local.is_dir() and artifact_digest(local) == expected:
            scorer = load_scorer(local)
        else:
            scorer = _download_and_load(registry, mv.version, expected, local)
        _MEMORY[key] = scorer
        return scorer


def _download_and_load(
    registry: ModelRegistry, version: str, expected: str, local: Path
) -> FlowScorer:
    local.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=local.parent))
    try:
        downloaded = registry.download(version, tmp / "model")
        digest = artifact_digest(downloaded)
        if digest != expected:
            raise ArtifactMismatch(
                f"{registry.model_name} version {version} at {registry.tracking_uri}: its files "
                f"(sha256 {digest[:12]}…) do not match the checksum recorded at registration "
                f"({expected[:12]}…); refusing to load it"
            )
        if local.exists():
            shutil.rmtree(local)
        downloaded.rename(local)
        return load_scorer(local)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
