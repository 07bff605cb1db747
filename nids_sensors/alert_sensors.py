"""Operational alerts, which open-source Dagster lacks: failed runs, failed asset checks
and sensors that keep failing are written to a durable outbox (NIDS_ALERT_OUTBOX_PATH,
one row per alert under an idempotency key) and logged; `alert_delivery_sensor` posts them
as JSON to NIDS_ALERT_WEBHOOK_URL, retrying with backoff until the webhook accepts each
one. A webhook that is down delays alerts, it never loses them."""

import json

from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from nids_core.escaping import escape_chat
from nids_resources.alert_delivery import deliver_alerts
from nids_resources.kafka import KafkaResource
from nids_resources.serving import ServingSettingsResource


def raise_alert(context, serving: ServingSettingsResource, alert_id: str, payload: dict) -> bool:
    """Log the alert and store it in the outbox (once per `alert_id`): delivered by
    alert_delivery_sensor. Raises only when the outbox cannot be written, so the calling
    sensor's tick fails and its cursor stays where it was."""
    added = serving.outbox().enqueue(alert_id, payload["kind"], payload)
    if added:
        context.log.warning(f"ALERT {payload['kind']}: {payload['summary']}")
    return added


@run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="Stores an alert for every failed run in the alert outbox "
    "(alert_delivery_sensor posts it to NIDS_ALERT_WEBHOOK_URL).",
)
def run_failure_alert_sensor(context: RunFailureSensorContext, serving: ServingSettingsResource):
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else ""
    raise_alert(
        context,
        serving,
        f"run_failure:{run.run_id}",
        {
            "kind": "run_failure",
            "summary": f"run {run.run_id} of {run.job_name} failed",
            "text": f":rotating_light: NIDS run of `{escape_chat(run.job_name)}` failed: "
            f"`{escape_chat(error)}`",
            "job": run.job_name,
            "run_id": run.run_id,
            "tags": dict(run.tags),
            "error": error,
        },
    )


@sensor(
    name="check_failure_alert_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Stores an alert in the alert outbox when an asset check (gate, accounting, "
    "lag, attack rate, scoring progress) starts failing: one per incident, not one per "
    "failed evaluation while it keeps failing.",
)
def check_failure_alert_sensor(context: SensorEvaluationContext, serving: ServingSettingsResource):
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    storage = context.instance.event_log_storage
    sent = 0
    for key in sorted(context.repository_def.asset_graph.asset_check_keys, key=str):
        name = f"{key.asset_key.to_user_string()}:{key.name}"
        # The newest executions of the check, oldest first. One alert per incident: a
        # failure after a pass (or the first ever); while the check keeps failing (the
        # lag sensor evaluates consumer_lag every minute) no further alert is raised.
        history = sorted(
            storage.get_asset_check_execution_history(key, limit=500), key=lambda r: r.id
        )
        previous = None
        for record in history:
            status, before = record.status.value, previous
            failed = status == "FAILED"
            if status in ("SUCCEEDED", "FAILED"):  # planned, skipped: no verdict
                previous = status
            if not failed or record.id <= seen.get(name, 0) or record.event is None:
                continue
            seen[name] = record.id
            if before == "FAILED":
                continue  # the same incident, still going on
            evaluation = record.event.dagster_event.event_specific_data
            metadata = {k: v.value for k, v in evaluation.metadata.items()}
            raise_alert(
                context,
                serving,
                f"check_failed:{name}:{record.id}",
                {
                    "kind": "check_failed",
                    "summary": f"{name} failed",
                    "text": f":warning: NIDS check `{key.name}` on "
                    f"`{key.asset_key.to_user_string()}` failed "
                    f"({evaluation.severity.value}): `{escape_chat(metadata)}`",
                    "asset": key.asset_key.to_user_string(),
                    "check": key.name,
                    "severity": evaluation.severity.value,
                    "metadata": metadata,
                    "run_id": record.run_id,
                    "timestamp": record.event.timestamp,
                },
            )
            sent += 1
            # Saved per alert: a later failure does not store again what is stored.
            context.update_cursor(json.dumps(seen, sort_keys=True))
        context.update_cursor(json.dumps(seen, sort_keys=True))
    if not sent:
        return SkipReason("no new failed asset checks")
    return None


@sensor(
    name="alert_delivery_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=10,
    description="Delivers what waits in the outbox, oldest first, each sink on its own: "
    "operational alerts and findings to NIDS_ALERT_WEBHOOK_URL, findings (OCSF) to the "
    "NIDS_ALERTS_TOPIC Kafka topic and (OCSF and ECS) to NDJSON files in NIDS_ALERTS_DIR. "
    "One a sink refuses is retried with exponential backoff (5 s doubling to 10 min) until "
    "accepted; nothing is dropped while a sink is down.",
)
def alert_delivery_sensor(
    context: SensorEvaluationContext, serving: ServingSettingsResource, kafka: KafkaResource
):
    report = deliver_alerts(serving, kafka)
    for error in report.errors:
        context.log.warning(f"alert delivery failed, retried later: {error}")
    return SkipReason(report.summary())
