"""Schedules: daily training (the promotion gate decides whether it serves)."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from nids_jobs.jobs import training_job


def daily_training_schedule(cron: str) -> ScheduleDefinition:
    """Training every day at `cron` (UTC; the NIDS_TRAINING_CRON setting)."""
    return ScheduleDefinition(
        name="daily_training_schedule",
        job=training_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Retrain on the last NIDS_TRAINING_DAYS cold days every day (UTC cron "
        "NIDS_TRAINING_CRON); the blocking gate checks decide whether the new version serves.",
    )
