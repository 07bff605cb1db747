"""The plausible time window of a flow, as a Dagster resource."""

from datetime import date, timedelta

from dagster import ConfigurableResource
from pydantic import Field

from nids_core.ingest.plausibility import DEFAULT_EARLIEST, DEFAULT_MAX_AHEAD_HOURS, PlausibleTime


class PlausibleTimeResource(ConfigurableResource):
    """Timestamps a flow may carry. Ingest quarantines flows outside the window; checks,
    alert windows and the hot-data lifecycle ignore any such row already stored."""

    earliest: str = Field(
        default=DEFAULT_EARLIEST.isoformat(), description="Earliest accepted day (YYYY-MM-DD)."
    )
    max_ahead_hours: float = Field(
        default=DEFAULT_MAX_AHEAD_HOURS, ge=0, description="Most hours a ts may lie ahead."
    )

    def window(self) -> PlausibleTime:
        return PlausibleTime(
            date.fromisoformat(self.earliest), timedelta(hours=self.max_ahead_hours)
        )
