"""The plausible time window of a flow, as a Dagster resource."""

from datetime import date, timedelta

from dagster import ConfigurableResource
from pydantic import field_validator

from nids_core.zeek.plausibility import DEFAULT_EARLIEST, DEFAULT_MAX_AHEAD_HOURS, PlausibleTime
from nids_resources.settings import setting


class PlausibleTimeResource(ConfigurableResource):
    """Timestamps a flow may carry. Ingest quarantines flows outside the window; checks,
    alert windows and the hot-data lifecycle ignore any such row already stored."""

    earliest: str = setting(
        DEFAULT_EARLIEST.isoformat(),
        env="NIDS_TS_EARLIEST",
        description="Flows with an earlier ts are quarantined (YYYY-MM-DD)",
    )
    max_ahead_hours: float = setting(
        DEFAULT_MAX_AHEAD_HOURS,
        env="NIDS_TS_MAX_AHEAD_HOURS",
        description="Flows with a ts more hours than this ahead of the clock are quarantined",
        ge=0,
    )

    @field_validator("earliest")
    @classmethod
    def _day(cls, value: str) -> str:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError("is not a date (YYYY-MM-DD)") from None
        return value

    def window(self) -> PlausibleTime:
        return PlausibleTime(
            date.fromisoformat(self.earliest), timedelta(hours=self.max_ahead_hours)
        )
