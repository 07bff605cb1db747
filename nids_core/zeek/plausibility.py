"""The plausible time window of a flow: what a sensor's clock can honestly report.

A flow whose `ts` lies before `earliest` or more than `max_ahead` past the present is
quarantined at ingest, and checks and alert windows ignore any such row already stored: one
far-future record must not pin "the newest window", never expire, or miss the cold store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

DEFAULT_EARLIEST = date(1990, 1, 1)
DEFAULT_MAX_AHEAD_HOURS = 24.0


@dataclass(frozen=True)
class PlausibleTime:
    """Timestamps accepted: not before `earliest` (UTC midnight), at most `max_ahead` after
    now; every finite one when not `enforced` (OFFLINE_FILES)."""

    earliest: date = DEFAULT_EARLIEST
    max_ahead: timedelta = timedelta(hours=DEFAULT_MAX_AHEAD_HOURS)
    enforced: bool = True

    def bounds(self, now: datetime | None = None) -> tuple[datetime, datetime]:
        """(lowest, highest) accepted timestamp, both UTC, at `now` (default: the clock)."""
        now = now or datetime.now(UTC)
        low = datetime(self.earliest.year, self.earliest.month, self.earliest.day, tzinfo=UTC)
        return low, now + self.max_ahead

    def latest(self, now: datetime | None = None) -> datetime:
        return self.bounds(now)[1]


# Files handed in (the reference corpus, `nids model evaluate`, `nids replay`): only the
# order and spacing of a capture's times matter, and many published captures count `ts`
# from the start of the capture. The window protects live ingestion alone.
OFFLINE_FILES = PlausibleTime(enforced=False)
