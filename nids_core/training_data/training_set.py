"""The training set: the labelled reference corpus plus live flows that analysts labelled,
split by time within each network.

Live traffic carries no labels of its own: a live flow enters only through an analyst's
label (the newest per uid), and where a uid is in both, the analyst's label wins. Each row
keeps its network (`capture`; live flows without one are network `live`), the network's
kind (`network_kind`; `live` for live flows) and its `source` (`reference` or `analyst`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import polars as pl

from nids_core.model.splits import SPLITS, time_split
from nids_core.schema import FLOW_COLUMNS, FLOW_SCHEMA, LABEL_MALICIOUS
from nids_core.stores.cold import ColdStore
from nids_core.stores.hot import dedupe_batch
from nids_core.training_data.networks import NETWORK_KIND_COLUMN

TRAINING_SET_PATH = "training/training_set.parquet"
LIVE_NETWORK = "live"
SOURCE_REFERENCE = "reference"
SOURCE_ANALYST = "analyst"
TRAINING_COLUMNS = [*FLOW_COLUMNS, NETWORK_KIND_COLUMN, "source"]
TRAINING_SCHEMA = {**FLOW_SCHEMA, NETWORK_KIND_COLUMN: pl.String(), "source": pl.String()}


@dataclass(frozen=True)
class TrainingSetSummary:
    days: list[str]
    rows: dict[str, int]
    attacks: dict[str, int]
    captures: int
    kinds: dict[str, int]  # kind of network -> networks of that kind
    reference_rows: int
    analyst_rows: int
    analyst_overrides: int

    def as_metadata(self) -> dict:
        return {
            "days_read": len(self.days),
            "first_day": self.days[0] if self.days else "",
            "last_day": self.days[-1] if self.days else "",
            "networks": self.captures,
            "kinds_of_network": ", ".join(f"{k} ({n})" for k, n in sorted(self.kinds.items())),
            "reference_rows": self.reference_rows,
            "analyst_labelled_rows": self.analyst_rows,
            "analyst_overrides_of_reference": self.analyst_overrides,
            **{f"{s}_rows": self.rows.get(s, 0) for s in SPLITS},
            **{f"{s}_attacks": self.attacks.get(s, 0) for s in SPLITS},
        }


def window_days(store: ColdStore, days: int, end: date) -> list[str]:
    """The cold days in [end - days + 1, end] that exist."""
    first = (end - timedelta(days=days - 1)).isoformat()
    return [d for d in store.cold_days() if first <= d <= end.isoformat()]


def read_cold_window(
    store: ColdStore, days: list[str], columns: list[str] | None = None
) -> pl.DataFrame:
    """The cold flows of those days, one row per uid (a flow rebuilt on two days counts once)."""
    columns = columns or FLOW_COLUMNS
    # The Kafka provenance decides which copy of a uid stored on two days is kept.
    wanted = list(dict.fromkeys([*columns, "topic", "partition", "offset"]))
    frames = [store.read_cold_day(d, wanted) for d in days]
    if not frames:
        return pl.DataFrame(schema={c: FLOW_SCHEMA[c] for c in columns})
    return dedupe_batch(pl.concat(frames, how="vertical_relaxed")).select(columns)


def combine_sources(
    reference: pl.DataFrame, live: pl.DataFrame, labels: pl.DataFrame
) -> tuple[pl.DataFrame, int]:
    """Labelled reference rows plus the live flows an analyst labelled; returns the rows and
    how many reference uids an analyst's label replaced."""
    if reference.height and NETWORK_KIND_COLUMN not in reference.columns:
        reference = reference.with_columns(pl.col("capture").alias(NETWORK_KIND_COLUMN))
    ref = (
        reference.filter(pl.col("label").is_not_null())
        .unique("uid", keep="first", maintain_order=True)
        .with_columns(pl.lit(SOURCE_REFERENCE).alias("source"))
        .select(TRAINING_COLUMNS)
        if reference.height
        else pl.DataFrame(schema=TRAINING_SCHEMA)
    )
    analyst = pl.DataFrame(schema=TRAINING_SCHEMA)
    if live.height and labels.height:
        analyst = (
            live.select(FLOW_COLUMNS)
            .drop("label")
            .join(labels.select("uid", "label"), on="uid", how="inner")
            .with_columns(
                pl.col("capture").fill_null(LIVE_NETWORK),
                pl.lit(LIVE_NETWORK).alias(NETWORK_KIND_COLUMN),
                pl.lit(SOURCE_ANALYST).alias("source"),
            )
            .select(TRAINING_COLUMNS)
        )
    overridden = ref.join(analyst.select("uid"), on="uid", how="semi").height
    ref = ref.join(analyst.select("uid"), on="uid", how="anti")
    return pl.concat([ref, analyst], how="vertical_relaxed"), overridden


def build_training_set(
    reference: pl.DataFrame,
    live: pl.DataFrame,
    labels: pl.DataFrame,
    days: list[str],
    validation: float = 0.1,
    test: float = 0.3,
) -> tuple[pl.DataFrame, TrainingSetSummary]:
    """The training rows with a `split` column (time-ordered per network, see
    nids_core.model.splits). `live` are cold flows, `labels` the newest analyst label per uid."""
    flows, overridden = combine_sources(reference, live, labels)
    if flows.height == 0:
        raise ValueError(
            f"no labelled flows: the reference corpus has none ({reference.height} rows) and "
            f"no analyst label names a cold flow of {len(days)} days; add labelled captures "
            "to the reference corpus (NIDS_REFERENCE_URL) or label live flows (`nids label`)"
        )
    split = time_split(flows, validation=validation, test=test)
    counts = split.group_by("split").agg(pl.len(), (pl.col("label") == LABEL_MALICIOUS).sum())
    rows = {r[0]: int(r[1]) for r in counts.iter_rows()}
    attacks = {r[0]: int(r[2]) for r in counts.iter_rows()}
    missing = [s for s in SPLITS if not rows.get(s)]
    if missing:
        raise ValueError(f"too few labelled flows ({flows.height}): empty split(s) {missing}")
    by_source = dict(split.group_by("source").len().iter_rows())
    summary = TrainingSetSummary(
        days=days,
        rows=rows,
        attacks=attacks,
        captures=split["capture"].n_unique(),
        kinds=dict(
            split.group_by(NETWORK_KIND_COLUMN).agg(pl.col("capture").n_unique()).iter_rows()
        ),
        reference_rows=int(by_source.get(SOURCE_REFERENCE, 0)),
        analyst_rows=int(by_source.get(SOURCE_ANALYST, 0)),
        analyst_overrides=overridden,
    )
    return split, summary
