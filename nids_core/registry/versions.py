"""The model in MLflow's registry: versions of `nids-gnn`, the `challenger` / `champion`
aliases (stages are deprecated in MLflow 3), the gate result and the artifact checksum of
each version. Plain MLflow client calls, no torch and no Dagster: the sensors, the CLI's
rollback and the tests use it too.

The gate holds on every path that moves `champion`: promotion and rollback refuse a version
whose gate did not pass, unless an operator overrides it explicitly (who, why and when are
recorded on the version), and a champion set by hand elsewhere (the MLflow UI, the API) is
refused when it is served (`servable_champion`).

Tags alone prove nothing (anyone who can write to MLflow can set them): a verdict counts
only when its signature verifies with the platform's key (see `signing`), over the files'
checksum; a version without one is never loaded at all.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nids_core.checksum import sha256_hex
from nids_core.registry.names import CHALLENGER, CHAMPION, MODEL_NAME
from nids_core.registry.signing import SIGNING_KEY_ENV, sign, signing_key, verify

GATE_TAG = "nids.gate"
GATE_OVERRIDE_TAG = "nids.gate_override"
CHECKSUM_TAG = "nids.artifact_sha256"
GATE_SIGNATURE_TAG = "nids.gate_signature"
OVERRIDE_SIGNATURE_TAG = "nids.gate_override_signature"
PREVIOUS_CHAMPION_TAG = "nids.previous_champion"

log = logging.getLogger(__name__)


class GateNotPassed(PermissionError):
    """A version whose promotion gate did not pass may not become or stay champion."""


class UnsignedModel(PermissionError):
    """A version whose files and verdict the platform did not sign: never loaded."""


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
    """What the tags say, unverified (for display): `passed`, `failed`, `overridden` or
    `missing` (never evaluated by the gate). `ModelRegistry.verified_status` is what counts."""
    if mv.tags.get(GATE_TAG) == "passed":
        return "passed"
    if mv.tags.get(GATE_OVERRIDE_TAG):
        return "overridden"
    return mv.tags.get(GATE_TAG) or "missing"


def _override_verdict(record_json: str) -> str:
    return "override:" + sha256_hex(record_json)


class ModelRegistry:
    """Versions and aliases of one registered model, at an explicit registry URI."""

    def __init__(
        self, tracking_uri: str, model_name: str = MODEL_NAME, signing_key: str | None = None
    ):
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self._signing_key = signing_key  # None: NIDS_MODEL_SIGNING_KEY

    # ------------------------------------------------------------------ signatures
    def _sign(self, mv: RegisteredVersion, verdict: str) -> str:
        checksum = mv.tags.get(CHECKSUM_TAG)
        if not checksum:
            raise UnsignedModel(
                f"{self.model_name} version {mv.version} has no {CHECKSUM_TAG}: its files "
                "must be checksummed (record_artifact_checksum) before a verdict is signed"
            )
        key = signing_key(self._signing_key)
        return sign(key, self.model_name, mv.version, mv.run_id, checksum, verdict)

    def _verifies(self, mv: RegisteredVersion, signature_tag: str, verdict: str) -> bool:
        checksum = mv.tags.get(CHECKSUM_TAG)
        if not checksum:
            return False
        key = signing_key(self._signing_key)
        return verify(
            key,
            mv.tags.get(signature_tag),
            self.model_name,
            mv.version,
            mv.run_id,
            checksum,
            verdict,
        )

    def verified_status(self, mv: RegisteredVersion) -> str:
        """`passed`, `overridden` or `failed` when the platform signed that verdict over the
        version's checksum; else `unsigned` (never evaluated, or tags set by someone else)."""
        override = mv.tags.get(GATE_OVERRIDE_TAG)
        verdict = mv.tags.get(GATE_TAG)
        if verdict == "passed" and self._verifies(mv, GATE_SIGNATURE_TAG, "passed"):
            return "passed"
        if override and self._verifies(mv, OVERRIDE_SIGNATURE_TAG, _override_verdict(override)):
            return "overridden"
        if verdict == "failed" and self._verifies(mv, GATE_SIGNATURE_TAG, "failed"):
            return "failed"
        return "unsigned"

    def require_signed(self, mv: RegisteredVersion) -> str:
        """The checksum a version's files must have, if the platform signed a verdict on
        them; raises UnsignedModel otherwise (before anything is downloaded or loaded)."""
        if self.verified_status(mv) == "unsigned":
            raise UnsignedModel(
                f"{self.model_name} version {mv.version} at {self.tracking_uri} carries no gate "
                f"verdict signed with this platform's {SIGNING_KEY_ENV} over the checksum of its "
                "files (registered or re-tagged outside the platform, or signed with another "
                "key): it is never loaded. Train it with training_job instead."
            )
        return mv.tags[CHECKSUM_TAG]

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
        status = self.verified_status(mv)
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
                "e.g. by hand in MLflow, or the verdict is not signed with this platform's "
                f"{SIGNING_KEY_ENV}). Nothing is scored with it: promote a version that "
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
        """Record the gate's verdict, signed over the checksum recorded for the version's
        files (record it first)."""
        mv = self.get_version(version)
        verdict = "passed" if passed else "failed"
        signature = self._sign(mv, verdict)
        self.client.set_model_version_tag(self.model_name, mv.version, GATE_TAG, verdict)
        self.client.set_model_version_tag(
            self.model_name, mv.version, GATE_SIGNATURE_TAG, signature
        )

    def _require_gate(
        self, mv: RegisteredVersion, override: GateOverride | None, action: str
    ) -> None:
        status = self.verified_status(mv)
        if status == "passed":
            return
        if override is None:
            raise GateNotPassed(
                f"{self.model_name} version {mv.version} has not passed the promotion gate "
                f"(tag {GATE_TAG}={mv.tags.get(GATE_TAG)!r}); refusing to {action}. To serve it "
                "anyway, override the gate explicitly (--force --by NAME --reason TEXT)."
            )
        if not mv.tags.get(CHECKSUM_TAG):
            raise UnsignedModel(
                f"{self.model_name} version {mv.version} has no {CHECKSUM_TAG}: its files were "
                "never checksummed by the platform, so no override can vouch for them"
            )
        record = {**override.__dict__, "at": datetime.now(UTC).isoformat(), "action": action}
        record_json = json.dumps(record)
        signature = self._sign(mv, _override_verdict(record_json))
        self.client.set_model_version_tag(
            self.model_name, mv.version, GATE_OVERRIDE_TAG, record_json
        )
        self.client.set_model_version_tag(
            self.model_name, mv.version, OVERRIDE_SIGNATURE_TAG, signature
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
