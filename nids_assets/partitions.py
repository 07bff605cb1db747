"""Partitioning shared by the cold store and everything computed from it."""

from datetime import date

from dagster import DailyPartitionsDefinition

# The first daily partition when nothing has landed yet and NIDS_COLD_START_DATE is unset:
# early enough for the public Zeek samples (2013) and IoT-23 (2018-2019) replayed without
# shifting. Once data has landed, the code location starts at its first day.
DEFAULT_FIRST_DAY = date(2013, 1, 1)


def daily_partitions(first_day: date) -> DailyPartitionsDefinition:
    """Daily partitions keyed by the flows' UTC date from `first_day`; end_offset=1 makes
    today's partition available while the day is still filling."""
    return DailyPartitionsDefinition(start_date=first_day.isoformat(), end_offset=1, timezone="UTC")
