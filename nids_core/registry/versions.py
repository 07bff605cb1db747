"""The model in MLflow's registry: versions of `nids-gnn`, the `challenger` / `champion`
aliases (stages are deprecated in MLflow 3), the gate result and the artifact checksum of
each version. Plain MLflow client calls, no torch and no Dagster: the sensors, the CLI's
rollback and the tests use it too.

The gate holds on every path that moves `champion`: promotion and rollback refuse a version
whose gate did not pass, unless an operator overrides it explicitly (who, why and when are
recorded on the version), and a champion set by hand elsewhere (the MLflow UI, the API) is
refused when it is served (`servable_champion`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nids_core.registry.names import CHALLENGER, CHAMPION, MODEL_NAME

GATE_TAG = "nids.gate"
GATE_OVERRIDE_TAG = "nids.gate_override"
CHECKSUM_TAG = "nids.artifact_sha256"
PREVIOUS_CHAMPION_TAG = "nids.previous_champion"

log = logging.getLogger(__name__)


class GateNotPassed(PermissionError):
    """A version whose promotion gate did not pass may not become or stay champion."""


class NoChampion(LookupError):
    """No model version carries alias `champion`: nothing may be scored."""


@dataclass(frozen=True)
class Promotion:
    version: str
    previous: str | None


@dataclass(frozen=True)
class GateOverride:
    """An operator's deliberate decision to serve a version the gate did not pass."""

    by: str
    reason: str

    def __post_init__(self) -> None:
        if not self.by.strip() or not self.reason.strip():
            raise ValueError("a gate override needs who (--by) and why (--reason)")


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version as the registry hands it out. `version` is always a string: MLflow's
    file and SQLite stores return ints, a tracking server strings; callers never convert."""

    version: str
    run_id: str | None
    source: str | None
    tags: dict[str, str]
    aliases: tuple[str, ...] = ()

    @classmethod
    def of(cls, mv) -> RegisteredVersion:
        """From MLflow's RegisteredVersion."""
        return cls(
            str(mv.version),
            mv.run_id,
            mv.source,
            dict(mv.tags or {}),
            tuple(getattr(mv, "aliases", None) or ()),
        )


def gate_status(mv: RegisteredVersion) -> str:
    """`passed`, `failed`, `overridden` or `missing` (never evaluated by the gate)."""
    if mv.tags.get(GATE_TAG) == "passed":
        return "passed"
    if mv.tags.get(GATE_OVERRIDE_TAG):
        return "overridden"
    return mv.tags.get(GATE_TAG) or "missing"


class ModelRegistry:
    """Versions and aliases of one registered model, at an explicit registry URI."""

    def __init__(self, tracking_uri: str, model_name: str = MODEL_NAME):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    # ------------------------------------------------------------------ reads
    def version_by_alias(self, alias: str) -> RegisteredVersion | None:
        try:
            return RegisteredVersion.of(
                self.client.get_model_version_by_alias(self.model_name, alias)
            )
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise

    def get_version(self, version: str) -> RegisteredVersion:
        """A version by number; the one place a number from outside (an int from MLflow's
        file store, a CLI argument) becomes the registry's string."""
        return RegisteredVersion.of(self.client.get_model_version(self.model_name, str(version)))

    def uri(self, alias_or_version: str) -> str:
        sep = "/" if alias_or_version.isdigit() else "@"
        return f"models:/{self.model_name}{sep}{alias_or_version}"

    def servable_champion(self) -> RegisteredVersion:
        """The champion, if serving it is allowed: its gate passed, or an operator overrode
        the gate for it. Raises NoChampion or GateNotPassed with what to do."""
        mv = self.version_by_alias(CHAMPION)
        if mv is None:
            raise NoChampion(
                f"registered model {self.model_name!r} at {self.tracking_uri} has no "
                f"`{CHAMPION}` alias: train and promote a model first (run training_job). "
                "No predictions are written without one."
            )
        status = gate_status(mv)
        if status == "overridden":
            override = json.loads(mv.tags[GATE_OVERRIDE_TAG])
            log.warning(
                "serving %s version %s under a gate override by %s: %s",
                self.model_name,
                mv.version,
                override.get("by"),
                override.get("reason"),
            )
        elif status != "passed":
            raise GateNotPassed(
                f"alias `{CHAMPION}` of {self.model_name!r} points at version {mv.version}, "
                f"whose promotion gate is {status!r} (the alias was moved outside the gate, "
                "e.g. by hand in MLflow). Nothing is scored with it: promote a version that "
                f"passed (`nids model rollback --to V`), or serve this one deliberately with "
                f"`nids model rollback --to {mv.version} --force --by NAME --reason TEXT`."
            )
        return mv

    # ------------------------------------------------------------------ artifacts
    def download(self, version: str, dst: str | Path) -> Path:
        """Download a version's model files into `dst`, resolved through this registry (the
        `models:/` scheme would resolve against the process's default registry instead)."""
        import mlflow

        source = self.client.get_model_version_download_uri(self.model_name, version)
        return Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        )

    def download_run_artifact(self, version: str, artifact_path: str, dst: str | Path) -> Path:
        """Download a file logged with the run that produced a version."""
        import mlflow
        from mlflow.exceptions import MlflowException

        mv = self.get_version(version)
        try:
            return Path(
                mlflow.artifacts.download_artifacts(
                    run_id=mv.run_id,
                    artifact_path=artifact_path,
                    dst_path=str(dst),
                    tracking_uri=self.tracking_uri,
                )
            )
        except (MlflowException, OSError) as exc:
            raise LookupError(
                f"{self.model_name} version {version} (run {mv.run_id}) has no artifact "
                f"{artifact_path}: {str(exc)[:200]}"
            ) from exc

    def record_checksum(self, version: str, digest: str) -> None:
        self.client.set_model_version_tag(self.model_name, version, CHECKSUM_TAG, digest)

    # ------------------------------------------------------------------ aliases
    def set_challenger(self, version: str) -> None:
        self.client.set_registered_model_alias(self.model_name, CHALLENGER, version)

    def mark_gate(self, version: str, passed: bool) -> None:
        self.client.set_model_version_tag(
            self.model_name, version, GATE_TAG, "passed" if passed else "failed"
        )

    def _require_gate(
        self, mv: RegisteredVersion, override: GateOverride | None, action: str
    ) -> None:
        status = gate_status(mv)
        if status == "passed":
            return
        if override is None:
            raise GateNotPassed(
                f"{self.model_name} version {mv.version} has not passed the promotion gate "
                f"(tag {GATE_TAG}={mv.tags.get(GATE_TAG)!r}); refusing to {action}. To serve it "
                "anyway, override the gate explicitly (--force --by NAME --reason TEXT)."
            )
        record = {**override.__dict__, "at": datetime.now(UTC).isoformat(), "action": action}
        self.client.set_model_version_tag(
            self.model_name, mv.version, GATE_OVERRIDE_TAG, json.dumps(record)
        )
        log.warning(
            "gate override: %s version %s (gate %r) by %s: %s",
            self.model_name,
            mv.version,
            mv.tags.get(GATE_TAG),
            override.by,
            override.reason,
        )

    def promote(self, version: str, override: GateOverride | None = None) -> Promotion:
        """Point `champion` at `version`, which must have passed the gate. The previous
        champion keeps its version and is tagged as superseded; the new one records it."""
        mv = self.get_version(version)
        self._require_gate(mv, override, "make it champion")
        version = mv.version
        current = self.version_by_alias(CHAMPION)
        previous = current.version if current is not None else None
        if previous == version:
            return Promotion(version, None)
        now = datetime.now(UTC).isoformat()
        if previous is not None:
            self.client.set_model_version_tag(
                self.model_name, previous, "nids.superseded_by", version
            )
            self.client.set_model_version_tag(self.model_name, previous, "nids.retired_at", now)
            self.client.set_model_version_tag(
                self.model_name, version, PREVIOUS_CHAMPION_TAG, previous
            )
        self.client.set_model_version_tag(self.model_name, version, "nids.promoted_at", now)
        self.client.set_registered_model_alias(self.model_name, CHAMPION, version)
        return Promotion(version, previous)

    def rollback(
        self, to_version: str | None = None, override: GateOverride | None = None
    ) -> Promotion:
        """Move `champion` back to `to_version`, or to the version it replaced. The target
        must have passed the gate, unless `override` says who serves it anyway and why."""
        current = self.version_by_alias(CHAMPION)
        if current is None:
            raise LookupError(f"{self.model_name} has no champion to roll back")
        target = to_version or current.tags.get(PREVIOUS_CHAMPION_TAG) or ""
        if not target:
            raise LookupError(
                f"champion version {current.version} replaced no earlier champion; "
                "name a version with --to"
            )
        mv = self.get_version(target)  # must exist
        self._require_gate(mv, override, "roll the champion back to it")
        self.client.set_registered_model_alias(self.model_name, CHAMPION, target)
        self.client.set_model_version_tag(
            self.model_name,
            current.version,
            "nids.rolled_back_at",
            datetime.now(UTC).isoformat(),
        )
        return Promotion(target, current.version)
