"""Gate verdicts signed with a key only the platform holds (NIDS_MODEL_SIGNING_KEY).

A model version's files are a pickle (MLflow's PyTorch flavour): loading one runs code. So
nothing is loaded unless the platform itself vouches for the exact files: the training run
records their checksum and signs, with HMAC-SHA256 over model name, version, run, checksum
and verdict, the gate's verdict (`nids.gate_signature`); an operator's override is signed
the same way over its record. Whoever can write to MLflow can register a pickle, tag it
`passed`, forge a checksum and move `champion`, but cannot sign: such a version is never
loaded, served, compared against or evaluated.
"""

from __future__ import annotations

import hashlib
import hmac
import os

SIGNING_KEY_ENV = "NIDS_MODEL_SIGNING_KEY"
MIN_KEY_CHARS = 16


class SigningKeyMissing(RuntimeError):
    """No (usable) signing key in the environment."""


def signing_key(explicit: str | None = None) -> bytes:
    """The platform's signing key: `explicit`, else NIDS_MODEL_SIGNING_KEY."""
    key = explicit if explicit is not None else os.environ.get(SIGNING_KEY_ENV, "")
    if key == SIGNING_KEY_ENV:
        # The variable's name where its value belongs (an unresolved dagster.EnvVar).
        raise SigningKeyMissing(f"{SIGNING_KEY_ENV} was passed by name, not by value")
    if len(key) < MIN_KEY_CHARS:
        raise SigningKeyMissing(
            f"{SIGNING_KEY_ENV} is {'not set' if not key else 'shorter than 16 characters'}: "
            "model versions are signed and verified with it (e.g. "
            "`export NIDS_MODEL_SIGNING_KEY=$(openssl rand -hex 32)`, kept with the "
            "deployment's other secrets and never given to MLflow users)"
        )
    return key.encode()


def _message(model_name: str, version: str, run_id: str | None, checksum: str, verdict: str):
    return "\x1f".join(["nids-gate-v1", model_name, str(version), run_id or "", checksum, verdict])


def sign(
    key: bytes, model_name: str, version: str, run_id: str | None, checksum: str, verdict: str
) -> str:
    """HMAC-SHA256 (hex) of a verdict on one version's exact files."""
    message = _message(model_name, version, run_id, checksum, verdict).encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def verify(
    key: bytes,
    signature: str | None,
    model_name: str,
    version: str,
    run_id: str | None,
    checksum: str,
    verdict: str,
) -> bool:
    if not signature:
        return False
    expected = sign(key, model_name, version, run_id, checksum, verdict)
    return hmac.compare_digest(expected, signature)
