"""Settings of the serving side: scoring, alerts, retention, lag thresholds, webhook."""

from dagster import ConfigurableResource
from pydantic import Field


class ServingSettingsResource(ConfigurableResource):
    """Scoring, alerting, hot-data retention and monitoring thresholds."""

    model_cache_dir: str = Field(
        default="var/model-cache", description="Local copies of model versions."
    )
    max_flows_per_scoring_run: int = Field(default=500_000, ge=1)
    alert_min_score: float = Field(default=0.9, ge=0, le=1)
    alert_window_minutes: int = Field(default=15, ge=1)
    max_attack_rate: float = Field(
        default=0.2, ge=0, le=1, description="Attack share of the newest window that fails."
    )
    hot_retention_hours: int = Field(default=24, ge=1)
    lag_warn_records: int = Field(default=100_000, ge=0)
    lag_fail_records: int = Field(default=1_000_000, ge=0)
    alert_webhook_url: str | None = Field(
        default=None, description="POST target for alerts (from the environment only)."
    )
