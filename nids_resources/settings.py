"""Every setting is declared once: a resource field (its default, bounds and meaning) names
the environment variable it is read from with `setting(...)`, and the settings that belong
to no resource (sensor intervals, schedules, partitions) are fields of the
pydantic-settings model `DeploymentSettings`. Both are read when the code location loads
(`build_definitions`), never at import; docs/configuration.md's table is generated from
these declarations (`nids settings`).

Secrets are passed to resources as `dagster.EnvVar` so they never appear in code, in the
UI or in run configs; they are optional, so an unset secret means "not used".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from typing import Any

from dagster import EnvVar
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SettingError(ValueError):
    """A configuration value is invalid; the message names the variable and why."""


def setting(
    default: Any = ...,
    *,
    env: str,
    description: str,
    secret: bool = False,
    shown_default: str | None = None,
    **bounds: Any,
) -> Any:
    """A resource field read from environment variable `env` (`secret`: passed as EnvVar).
    `shown_default` is what the configuration table shows when the default is computed."""
    extra: dict[str, Any] = {"env": env}
    if secret:
        extra["secret"] = True
    if shown_default is not None:
        extra["shown_default"] = shown_default
    return Field(default, description=description, json_schema_extra=extra, **bounds)


def env_names(model: type[BaseModel]) -> dict[str, str]:
    """{field: environment variable} of a model's fields declared with `setting(...)`."""
    names = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and "env" in extra:
            names[name] = str(extra["env"])
    return names


def from_env(model: type[BaseModel], **fixed: Any) -> Any:
    """An instance of `model` (a resource) with every declared field that is set (non-empty)
    in the environment taken from there, secrets as `EnvVar`; `fixed` fields given as is.
    A bad value raises SettingError naming the variable, its value and why."""
    values: dict[str, Any] = {}
    for name, var in env_names(model).items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        extra = model.model_fields[name].json_schema_extra
        values[name] = EnvVar(var) if isinstance(extra, dict) and extra.get("secret") else raw
    try:
        return model(**values, **fixed)
    except ValidationError as exc:
        raise SettingError(_explain(exc, model, values)) from None


def _explain(exc: ValidationError, model: type[BaseModel], values: dict[str, Any]) -> str:
    names = env_names(model)
    by_variable = {var: name for name, var in names.items()}
    problems = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"] if isinstance(part, str)]
        # A resource reports the field; pydantic-settings the variable (its alias).
        field = by_variable.get(loc[0], loc[0]) if loc else None
        var = names.get(field or "", field or model.__name__)
        value = values.get(field, error.get("input")) if field else None
        problems.append(_reason(var, value, error, model, field))
    return "; ".join(problems)


def _reason(var: str, value: Any, error: dict, model: type[BaseModel], field: str | None) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind in ("int_parsing", "int_from_float"):
        return f"{var}={value!r} is not an integer"
    if kind == "float_parsing":
        return f"{var}={value!r} is not a number"
    if kind == "bool_parsing":
        return f"{var}={value!r} is not true or false"
    if kind in ("date_from_datetime_parsing", "date_parsing"):
        return f"{var}={value!r} is not a date (YYYY-MM-DD)"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        low = _bound(model, field, ("ge", "gt"))
        high = _bound(model, field, ("le", "lt"))
        shown = _number(value)
        if high is not None and low is not None:
            return f"{var}={shown} must be in [{float(low)}, {float(high)}]"
        if kind.startswith("greater"):
            word = "at least" if kind == "greater_than_equal" else "above"
            return f"{var}={shown} must be {word} {ctx.get('ge', ctx.get('gt'))}"
        word = "at most" if kind == "less_than_equal" else "below"
        return f"{var}={shown} must be {word} {ctx.get('le', ctx.get('lt'))}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if field is None:  # a rule across several settings: the message names them
        return message
    joiner = " " if message.startswith("is ") else ": "
    return f"{var}={value!r}{joiner}{message}"


def _number(value: Any) -> Any:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return repr(value)
    return int(number) if number.is_integer() and "." not in str(value) else number


def _bound(model: type[BaseModel], field: str | None, keys: tuple[str, ...]) -> Any:
    if field is None:
        return None
    for meta in model.model_fields[field].metadata:
        for key in keys:
            if getattr(meta, key, None) is not None:
                return getattr(meta, key)
    return None


def deployment_setting(default: Any, *, env: str, **kw: Any) -> Any:
    """A DeploymentSettings field, which pydantic-settings reads from variable `env`."""
    return setting(default, env=env, validation_alias=env, **kw)


class DeploymentSettings(BaseSettings):
    """Settings that belong to no resource: how often sensors look, when training runs,
    where the daily partitions start and where the data directory is. Read when the code
    location loads."""

    model_config = SettingsConfigDict(env_ignore_empty=True, extra="ignore")

    kafka_sensor_interval_s: int = deployment_setting(
        2,
        env="NIDS_KAFKA_SENSOR_INTERVAL_S",
        description="Seconds between Kafka sensor ticks (dagster-daemon evaluates "
        "sensors at most every 5 s)",
        ge=1,
    )
    cold_start_date: date | None = deployment_setting(
        None,
        env="NIDS_COLD_START_DATE",
        description="First daily cold partition (YYYY-MM-DD)",
        shown_default="first day with landed data, else 2013-01-01",
    )
    cold_sensor_interval_s: int = deployment_setting(
        60,
        env="NIDS_COLD_SENSOR_INTERVAL_S",
        description="Seconds between cold-partition sensor ticks",
        ge=1,
    )
    cold_compact_after_s: int = deployment_setting(
        3600,
        env="NIDS_COLD_COMPACT_AFTER_S",
        description="Seconds after a day closed, and after its last appended batch, before "
        "its cold partition is compacted",
        ge=0,
    )
    reference_sensor_interval_s: int = deployment_setting(
        60,
        env="NIDS_REFERENCE_SENSOR_INTERVAL_S",
        description="Seconds between reference-corpus checks",
        ge=1,
    )
    training_cron: str = deployment_setting(
        "0 3 * * *", env="NIDS_TRAINING_CRON", description="Daily training schedule (cron, UTC)"
    )
    lag_sensor_interval_s: int = deployment_setting(
        60,
        env="NIDS_LAG_SENSOR_INTERVAL_S",
        description="Seconds between consumer-lag observations",
        ge=1,
    )
    scoring_sensor_interval_s: int = deployment_setting(
        2,
        env="NIDS_SCORING_SENSOR_INTERVAL_S",
        description="Seconds between scoring sensor ticks (dagster-daemon evaluates "
        "sensors at most every 5 s)",
        ge=1,
    )
    dead_run_sensor_interval_s: int = deployment_setting(
        15,
        env="NIDS_DEAD_RUN_SENSOR_INTERVAL_S",
        description="Seconds between checks for runs whose process died",
        ge=1,
    )
    data_dir: str | None = deployment_setting(
        None,
        env="NIDS_DATA_DIR",
        description="Directory with the IoT-23 and Zeek sample data",
        shown_default="./data, then ../shared/data",
    )

    @field_validator("training_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("is not a cron expression of five fields")
        return value


def load_deployment_settings() -> DeploymentSettings:
    """DeploymentSettings from the environment; a bad value raises SettingError naming it."""
    try:
        return DeploymentSettings()
    except ValidationError as exc:
        raise SettingError(_explain(exc, DeploymentSettings, {})) from None


@dataclass(frozen=True)
class SettingRow:
    variable: str
    default: str
    meaning: str
    secret: bool


def _shown(field, extra) -> str:
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    default = field.get_default(call_default_factory=True)
    if default is None:
        return ""
    if isinstance(default, bool):
        return str(default).lower()
    return str(default)


def setting_rows(models: list[type[BaseModel]]) -> list[SettingRow]:
    """One row per environment variable, in declaration order; a variable that several
    resources read (the MLflow URI, say) is listed once."""
    rows: dict[str, SettingRow] = {}
    for model in models:
        for name, var in env_names(model).items():
            field = model.model_fields[name]
            extra = field.json_schema_extra
            secret = isinstance(extra, dict) and bool(extra.get("secret"))
            shown = "" if secret else _shown(field, extra)
            rows.setdefault(var, SettingRow(var, shown, field.description or "", secret))
    return list(rows.values())


def settings_table(rows: list[SettingRow]) -> str:
    """The configuration table of docs/configuration.md (markdown)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for row in rows:
        meaning = row.meaning.rstrip(".") + (" (secret)" if row.secret else "")
        lines.append(f"| {row.variable} | {row.default} | {meaning} |")
    return "\n".join(lines)
