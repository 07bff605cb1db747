"""Environment-backed settings: every value from the environment, with a local default.

Secrets are passed to resources as `dagster.EnvVar` so they never appear in code, in the
UI or in run configs; they are optional, so an unset secret means "not used".
"""

import os

from dagster import EnvVar


class SettingError(ValueError):
    """A configuration value is invalid; the message names the variable and why."""


def env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_int(name: str, default: int, minimum: int = 1) -> int:
    raw = env(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingError(f"{name}={value} must be at least {minimum}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env(name, default)
    if value not in choices:
        raise SettingError(f"{name}={value!r} is not one of: {', '.join(choices)}")
    return value


def secret(name: str) -> EnvVar | None:
    """`EnvVar(name)` when the variable is set, else None (the secret is not used)."""
    return EnvVar(name) if os.environ.get(name) else None


def env_float(
    name: str, default: float, minimum: float = 0.0, maximum: float | None = None
) -> float:
    raw = env(name, str(default))
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a number") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"[{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise SettingError(f"{name}={value} must be in {bounds}")
    return value
