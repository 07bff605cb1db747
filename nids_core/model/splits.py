"""Time-ordered splits: earlier flows train, later flows test; never random rows."""

from __future__ import annotations

import polars as pl

SPLITS = ("train", "validation", "test")


def time_split(
    flows: pl.DataFrame,
    validation: float = 0.1,
    test: float = 0.3,
    group: str | None = "capture",
) -> pl.DataFrame:
    """Add a `split` column. Within each group (a capture/network when the column exists,
    else everything) flows are ordered by (ts, uid): the first 1-validation-test share
    trains, the next `validation` share validates, the last `test` share tests."""
    if not (0 <= validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise ValueError(f"bad split fractions: validation={validation}, test={test}")
    by = [group] if group and group in flows.columns else []
    position = (pl.int_range(pl.len()).over(by) if by else pl.int_range(pl.len())) / (
        pl.len().over(by) if by else pl.len()
    )
    train_end = 1 - validation - test
    return (
        flows.sort([*by, "ts", "uid"])
        .with_columns(position.alias("_pos"))
        .with_columns(
            pl.when(pl.col("_pos") < train_end)
            .then(pl.lit("train"))
            .when(pl.col("_pos") < train_end + validation)
            .then(pl.lit("validation"))
            .otherwise(pl.lit("test"))
            .alias("split")
        )
        .drop("_pos")
    )
