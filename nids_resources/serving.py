"""Settings of the serving side: scoring, alerts, retention, lag thresholds, webhook."""

from dagster import ConfigurableResource
from pydantic import model_validator

from nids_core.serving.outbox import AlertOutbox
from nids_resources.settings import setting


class ServingSettingsResource(ConfigurableResource):
    """Scoring, alerting, hot-data retention and monitoring thresholds."""

    model_cache_dir: str = setting(
        "var/model-cache",
        env="NIDS_MODEL_CACHE_DIR",
        description="Local cache of downloaded model versions",
    )
    max_flows_per_scoring_run: int = setting(
        500_000,
        env="NIDS_SCORE_MAX_FLOWS",
        description="Most flows scored in one scoring pass",
        ge=1,
    )
    score_follow_seconds: int = setting(
        300,
        env="NIDS_SCORE_FOLLOW_S",
        description="Seconds a scoring run keeps scoring flows as they land, each second "
        "(0: one pass per run)",
        ge=0,
    )
    alert_min_score: float = setting(
        0.9,
        env="NIDS_ALERT_MIN_SCORE",
        description="Attack score at or above which a flow is an alert",
        ge=0,
        le=1,
    )
    alert_window_minutes: int = setting(
        15,
        env="NIDS_ALERT_WINDOW_MINUTES",
        description="Alert grouping window per source host",
        ge=1,
    )
    max_attack_rate: float = setting(
        0.2,
        env="NIDS_ALERT_MAX_ATTACK_RATE",
        description="Attack share of the newest window that fails a check",
        ge=0,
        le=1,
    )
    attack_rate_min_flows: int = setting(
        200,
        env="NIDS_ALERT_RATE_MIN_FLOWS",
        description="Fewest scored flows the attack-rate check judges: a sparser newest window "
        "is widened back, window by window",
        ge=1,
    )
    alert_webhook_url: str | None = setting(
        None,
        env="NIDS_ALERT_WEBHOOK_URL",
        description="POST JSON alerts here (unset: alerts only logged)",
        secret=True,
    )
    alert_outbox_path: str = setting(
        "var/alert-outbox.sqlite",
        env="NIDS_ALERT_OUTBOX_PATH",
        description="SQLite file of the operational alerts' outbox (kept until delivered)",
    )
    sensor_fail_ticks: int = setting(
        5,
        env="NIDS_HEALTH_SENSOR_FAIL_TICKS",
        description="Failed ticks in a row after which a sensor raises an alert",
        ge=1,
    )
    stall_minutes: int = setting(
        10,
        env="NIDS_HEALTH_STALL_MINUTES",
        description="Minutes records may wait with no batch committed, or landed flows "
        "wait unscored, before consumer_lag or scoring_keeps_up fails",
        ge=1,
    )
    hot_retention_hours: int = setting(
        24,
        env="NIDS_HOT_RETENTION_HOURS",
        description="Hot flows older than this move out (when cold)",
        ge=1,
    )
    lag_warn_records: int = setting(
        100_000,
        env="NIDS_LAG_WARN_RECORDS",
        description="Consumer lag per partition that warns",
        ge=0,
    )
    lag_fail_records: int = setting(
        1_000_000,
        env="NIDS_LAG_FAIL_RECORDS",
        description="Consumer lag per partition that fails",
        ge=0,
    )

    @model_validator(mode="after")
    def _fail_above_warn(self) -> "ServingSettingsResource":
        if self.lag_fail_records < self.lag_warn_records:
            raise ValueError(
                f"NIDS_LAG_FAIL_RECORDS={self.lag_fail_records} is below "
                f"NIDS_LAG_WARN_RECORDS={self.lag_warn_records}"
            )
        return self

    def outbox(self) -> AlertOutbox:
        return AlertOutbox(self.alert_outbox_path)
