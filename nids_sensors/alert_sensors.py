"""Alert delivery, which open-source Dagster lacks: failed runs and failed asset checks are
posted as JSON to NIDS_ALERT_WEBHOOK_URL (and logged). A delivery that fails leaves the
cursor where it was, so the alert is sent on a later tick rather than lost."""

import json

from dagster import (
    DefaultSensorStatus,
    RunFailureSensorContext,
    SensorEvaluationContext,
    SkipReason,
    run_failure_sensor,
    sensor,
)

from nids_core.serving.webhook import post_alert
from nids_resources.serving import ServingSettingsResource


def deliver(context, serving: ServingSettingsResource, payload: dict) -> None:
    context.log.warning(f"ALERT {payload['kind']}: {payload['summary']}")
    if serving.alert_webhook_url:
        post_alert(serving.alert_webhook_url, payload)


@run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="Posts a JSON alert for every failed run to NIDS_ALERT_WEBHOOK_URL.",
)
def run_failure_alert_sensor(context: RunFailureSensorContext, serving: ServingSettingsResource):
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else ""
    deliver(
        context,
        serving,
        {
            "kind": "run_failure",
            "summary": f"run {run.run_id} of {run.job_name} failed",
            "text": f":rotating_light: NIDS run of `{run.job_name}` failed: {error}",
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
    description="Posts a JSON alert for every failed asset check (gate, accounting, lag, "
    "attack rate) to NIDS_ALERT_WEBHOOK_URL.",
)
def check_failure_alert_sensor(context: SensorEvaluationContext, serving: ServingSettingsResource):
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    storage = context.instance.event_log_storage
    sent = 0
    for key in sorted(context.repository_def.asset_graph.asset_check_keys, key=str):
        name = f"{key.asset_key.to_user_string()}:{key.name}"
        # The newest executions of the check; the failed ones are delivered once each.
        history = storage.get_asset_check_execution_history(key, limit=500)
        failed = [r for r in history if r.status.value == "FAILED"]
        for record in sorted(failed, key=lambda r: r.id):
            if record.id <= seen.get(name, 0) or record.event is None:
                continue
            evaluation = record.event.dagster_event.event_specific_data
            metadata = {k: v.value for k, v in evaluation.metadata.items()}
            deliver(
                context,
                serving,
                {
                    "kind": "check_failed",
                    "summary": f"{name} failed",
                    "text": f":warning: NIDS check `{key.name}` on "
                    f"`{key.asset_key.to_user_string()}` failed "
                    f"({evaluation.severity.value}): {metadata}",
                    "asset": key.asset_key.to_user_string(),
                    "check": key.name,
                    "severity": evaluation.severity.value,
                    "metadata": metadata,
                    "run_id": record.run_id,
                    "timestamp": record.event.timestamp,
                },
            )
            sent += 1
            seen[name] = record.id
            # Saved per delivery: a later failure does not resend what already went out.
            context.update_cursor(json.dumps(seen, sort_keys=True))
    if not sent:
        return SkipReason("no new failed asset checks")
    return None
