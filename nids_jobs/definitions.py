"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources.

Everything that depends on a setting (resources, sensor intervals, the training schedule,
the daily partitions' first day) is built here from the environment when the code location
loads; nothing is read at import.
"""

from datetime import UTC, date, datetime

from dagster import Definitions, definitions

from nids_assets.cold import cold_assets
from nids_assets.ingestion import consumer_offsets, flow_batch, hot_flows
from nids_assets.model import champion_model, gnn_model, training_set
from nids_assets.partitions import DEFAULT_FIRST_DAY, daily_partitions
from nids_assets.reference import flow_labels, reference_flows
from nids_assets.scoring import alerts, flow_predictions
from nids_jobs.jobs import (
    alerts_job,
    cold_flows_job,
    ingest_job,
    reference_job,
    scoring_job,
    training_job,
)
from nids_jobs.lifecycle import hot_lifecycle_job, hourly_lifecycle_schedule
from nids_jobs.schedules import daily_training_schedule
from nids_resources.from_env import resources_from_env
from nids_resources.settings import DeploymentSettings, load_deployment_settings
from nids_sensors.alert_sensors import (
    alert_delivery_sensor,
    check_failure_alert_sensor,
    run_failure_alert_sensor,
)
from nids_sensors.attack_rate_sensor import attack_rate_sensor
from nids_sensors.cold_sensor import cold_flows_sensor
from nids_sensors.dead_runs import dead_run_sensor
from nids_sensors.kafka_sensor import kafka_ingest_sensor
from nids_sensors.lag_sensor import kafka_lag_sensor
from nids_sensors.reference_sensor import reference_corpus_sensor
from nids_sensors.scoring_sensor import scoring_sensor


def first_partition_day(settings: DeploymentSettings, resources: dict) -> date:
    """NIDS_COLD_START_DATE when set; else the first day with landed data, so the UI lists
    no empty days before it; else (nothing landed yet) DEFAULT_FIRST_DAY, early enough for
    replayed captures. A store that cannot be listed now is not a reason to fail the load."""
    if settings.cold_start_date is not None:
        return settings.cold_start_date
    try:
        landed = resources["cold_store"].store().landing_days()
    except Exception:
        landed = []
    first = min(landed, default=None)
    if first is None:
        return DEFAULT_FIRST_DAY
    return min(date.fromisoformat(first), datetime.now(UTC).date())


def build_definitions(
    resources: dict | None = None, settings: DeploymentSettings | None = None
) -> Definitions:
    """Definitions with the given resources and settings (default: from the environment)."""
    settings = settings if settings is not None else load_deployment_settings()
    resources = resources if resources is not None else resources_from_env()
    partitions = daily_partitions(first_partition_day(settings, resources))
    return Definitions(
        assets=[
            flow_batch,
            hot_flows,
            consumer_offsets,
            *cold_assets(partitions),
            reference_flows,
            flow_labels,
            training_set,
            gnn_model,
            champion_model,
            flow_predictions,
            alerts,
        ],
        jobs=[
            ingest_job,
            cold_flows_job,
            reference_job,
            training_job,
            scoring_job,
            alerts_job,
            hot_lifecycle_job,
        ],
        schedules=[daily_training_schedule(settings.training_cron), hourly_lifecycle_schedule],
        sensors=[
            kafka_ingest_sensor(settings.kafka_sensor_interval_s),
            cold_flows_sensor(
                settings.cold_sensor_interval_s, partitions, settings.cold_compact_after_s
            ),
            reference_corpus_sensor(settings.reference_sensor_interval_s),
            scoring_sensor(settings.scoring_sensor_interval_s),
            attack_rate_sensor(settings.scoring_sensor_interval_s),
            dead_run_sensor(settings.dead_run_sensor_interval_s),
            kafka_lag_sensor(settings.lag_sensor_interval_s),
            run_failure_alert_sensor,
            check_failure_alert_sensor,
            alert_delivery_sensor,
        ],
        resources=resources,
    )


@definitions
def defs() -> Definitions:
    """The code location Dagster loads (`dagster dev`, `dg dev`, the daemon)."""
    return build_definitions()
