"""Schedules: daily training (the promotion gate decides whether it serves)."""

from dagster import DefaultScheduleStatus, ScheduleDefinition

from nids_jobs.jobs import training_job
from nids_resources.settings import env

daily_training_schedule = ScheduleDefinition(
    name="daily_training_schedule",
    job=training_job,
    cron_schedule=env("NIDS_TRAINING_CRON", "0 3 * * *"),
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Retrain on the last NIDS_TRAINING_DAYS cold days every day (UTC cron "
    "NIDS_TRAINING_CRON); the blocking gate checks decide whether the new version serves.",
)
