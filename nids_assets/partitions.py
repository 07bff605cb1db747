"""Partitioning shared by the cold store and everything computed from it."""

from dagster import DailyPartitionsDefinition

from nids_resources.settings import env

# Daily partitions keyed by the flows' UTC date; end_offset=1 makes today's partition
# available while the day is still filling. The start is early enough for the public
# Zeek samples (2013) and IoT-23 (2018-2019) replayed without shifting.
daily_partitions = DailyPartitionsDefinition(
    start_date=env("NIDS_COLD_START_DATE", "2013-01-01"), end_offset=1, timezone="UTC"
)
