"""The Dagster code location: assets, checks, jobs, schedules, sensors and resources."""

from dagster import Definitions

from nids_assets.cold import cold_flows, cold_predictions
from nids_assets.ingestion import consumer_offsets, flow_batch, hot_flows
from nids_assets.model import champion_model, gnn_model, training_set
from nids_assets.reference import flow_labels, reference_flows
from nids_assets.scoring import alerts, flow_predictions
from nids_jobs.jobs import (
    cold_flows_job,
    ingest_job,
    reference_job,
    scoring_job,
    training_job,
)
from nids_jobs.lifecycle import hot_lifecycle_job, hourly_lifecycle_schedule
from nids_jobs.schedules import daily_training_schedule
from nids_resources.from_env import resources_from_env
from nids_sensors.alert_sensors import check_failure_alert_sensor, run_failure_alert_sensor
from nids_sensors.cold_sensor import cold_flows_sensor
from nids_sensors.dead_runs import dead_run_sensor
from nids_sensors.kafka_sensor import kafka_ingest_sensor
from nids_sensors.lag_sensor import kafka_lag_sensor
from nids_sensors.reference_sensor import reference_corpus_sensor
from nids_sensors.scoring_sensor import scoring_sensor

ASSETS = [
    flow_batch,
    hot_flows,
    consumer_offsets,
    cold_flows,
    reference_flows,
    flow_labels,
    training_set,
    gnn_model,
    champion_model,
    flow_predictions,
    alerts,
    cold_predictions,
]


def build_definitions(resources: dict | None = None) -> Definitions:
    """Definitions with the given resources (default: from the environment)."""
    return Definitions(
        assets=ASSETS,
        jobs=[
            ingest_job,
            cold_flows_job,
            reference_job,
            training_job,
            scoring_job,
            hot_lifecycle_job,
        ],
        schedules=[daily_training_schedule, hourly_lifecycle_schedule],
        sensors=[
            kafka_ingest_sensor,
            cold_flows_sensor,
            reference_corpus_sensor,
            scoring_sensor,
            dead_run_sensor,
            kafka_lag_sensor,
            run_failure_alert_sensor,
            check_failure_alert_sensor,
        ],
        resources=resources if resources is not None else resources_from_env(),
    )


defs = build_definitions()
