"""Declarative automation for the serving assets: flow_predictions and alerts are eager, so
they are requested after every ingest run (and after a promotion)."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from nids_assets.scoring import alerts, flow_predictions
from nids_resources.settings import env_int

serving_automation_sensor = AutomationConditionSensorDefinition(
    "serving_automation_sensor",
    target=AssetSelection.assets(flow_predictions, alerts),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=env_int("NIDS_AUTOMATION_INTERVAL_S", 30),
    description="Evaluates the eager automation conditions of flow_predictions and alerts.",
)
