"""Settings of the serving side: scoring, alerts, retention, lag thresholds, webhook."""

from dagster import ConfigurableResource
from pydantic import model_validator

from nids_core.detection.allow_list import AllowEntry, read_allow_file
from nids_core.detection.sensitivity import SENSITIVITIES, Thresholds
from nids_core.detection.triage import TriageStore
from nids_core.serving.outbox import AlertOutbox
from nids_resources.settings import setting

DISABLED = "none"  # the value of NIDS_ALERTS_TOPIC / NIDS_ALERTS_DIR that turns a sink off


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
        description="SQLite file of the alert outbox (kept until delivered), the analysts' "
        "alert status and the allow-list",
    )
    alert_sensitivity: str = setting(
        "medium",
        env="NIDS_ALERT_SENSITIVITY",
        description="low, medium or high: moves every detector's threshold and the alert "
        "threshold together (low asks for twice the evidence, high for half)",
    )
    allow_list_file: str | None = setting(
        None,
        env="NIDS_ALLOW_LIST_FILE",
        description="TOML file of allow-list entries ([[allow]] host/peer/port/detector, "
        "by, why, expires), beside those of `nids allow add`",
    )
    alerts_topic: str = setting(
        "nids.alerts",
        env="NIDS_ALERTS_TOPIC",
        description="Kafka topic that gets each new or changed alert as an OCSF Detection "
        "Finding (`none`: no Kafka delivery)",
    )
    alerts_dir: str = setting(
        "var/alerts",
        env="NIDS_ALERTS_DIR",
        description="Folder of NDJSON alert files for a shipper to tail, ocsf-<day>.ndjson "
        "and ecs-<day>.ndjson (`none`: no files)",
    )
    alert_high_severity: int = setting(
        60,
        env="NIDS_ALERT_HIGH_SEVERITY",
        description="Severity (0-100) of an alert that fails the `new_high_severity_alert` "
        "check while it is new",
        ge=0,
        le=100,
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
    def _known_sensitivity(self) -> "ServingSettingsResource":
        if self.alert_sensitivity not in SENSITIVITIES:
            raise ValueError(
                f"NIDS_ALERT_SENSITIVITY={self.alert_sensitivity!r} is not one of "
                f"{', '.join(SENSITIVITIES)}"
            )
        if self.allow_list_file:
            read_allow_file(self.allow_list_file)  # a bad file fails at start, naming it
        return self

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

    def triage(self) -> TriageStore:
        return TriageStore(self.alert_outbox_path)

    def thresholds(self) -> Thresholds:
        return Thresholds.for_sensitivity(self.alert_sensitivity)

    def allow_entries(self) -> list[AllowEntry]:
        entries = self.triage().allow_entries()
        return entries + (read_allow_file(self.allow_list_file) if self.allow_list_file else [])

    def kafka_alerts_topic(self) -> str | None:
        return None if self.alerts_topic.lower() == DISABLED else self.alerts_topic

    def alerts_folder(self) -> str | None:
        return None if self.alerts_dir.lower() == DISABLED else self.alerts_dir

    def alert_sinks(self) -> list[str]:
        """The sinks each alert is queued for: Kafka and files unless their setting is
        empty, the webhook when it is set."""
        sinks = []
        if self.kafka_alerts_topic():
            sinks.append("kafka")
        if self.alerts_folder():
            sinks.append("file")
        if self.alert_webhook_url:
            sinks.append("webhook")
        return sinks
