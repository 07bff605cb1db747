"""The training set: labelled flows of the last N cold days, split by time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from nids_core.cold_store import ColdStore
from nids_core.hot_store import dedupe_batch
from nids_core.splits import SPLITS, time_split

TRAINING_SET_PATH = "training/training_set.parquet"


@dataclass(frozen=True)
class TrainingSetSummary:
    days: list[str]
    rows: dict[str, int]
    attacks: dict[str, int]
    captures: int

    def as_metadata(self) -> dict:
        return {
            "days_read": len(self.days),
            "first_day": self.days[0] if self.days else "",
            "last_day": self.days[-1] if self.days else "",
            "captures": self.captures,
            **{f"{s}_rows": self.rows.get(s, 0) for s in SPLITS},
            **{f"{s}_attacks": self.attacks.get(s, 0) for s in SPLITS},
        }


def build_training_set(
    store: ColdStore,
    days: int,
    end: date,
    validation: float = 0.1,
    test: float = 0.3,
) -> tuple[pl.DataFrame, TrainingSetSummary]:
    """Labelled rows of the cold partitions in [end - days + 1, end], with a `split`
    column (time-ordered per capture, see nids_core.splits)."""
    first = end - timedelta(days=days - 1)
    wanted = [d for d in store.cold_days() if first.isoformat() <= d <= end.isoformat()]
    frames = [store.read_cold_day(d) for d in wanted]
    flows = pl.concat(frames) if frames else pl.DataFrame()
    if flows.height:
        # A flow stored on two days (rebuilt apart) is trained on once.
        flows = dedupe_batch(flows).filter(pl.col("label").is_not_null())
    if flows.height == 0:
        raise ValueError(
            f"no labelled flows in cold partitions {first} .. {end} "
            f"({len(wanted)} partitions found): ingest labelled data or widen the window"
        )
    split = time_split(flows, validation=validation, test=test)
    counts = split.group_by("split").agg(pl.len(), (pl.col("label") == "malicious").sum())
    rows = {r[0]: int(r[1]) for r in counts.iter_rows()}
    attacks = {r[0]: int(r[2]) for r in counts.iter_rows()}
    missing = [s for s in SPLITS if not rows.get(s)]
    if missing:
        raise ValueError(f"too few labelled flows ({flows.height}): empty split(s) {missing}")
    captures = split["capture"].n_unique() if "capture" in split.columns else 1
    return split, TrainingSetSummary(wanted, rows, attacks, captures)
