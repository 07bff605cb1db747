"""The graph window: the one type a flow graph's time window has, from the setting
(NIDS_GRAPH_WINDOW_MINUTES, converted once) through training to the scoring SQL.

A window is a timedelta, or None for one graph of all flows. Windows are aligned to the
Unix epoch: a flow's window number is its ts in microseconds // the window's microseconds,
the same in polars (training, scoring) and in DuckDB (which rows are a window's context).
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

GraphWindow = timedelta | None
DEFAULT_WINDOW: GraphWindow = timedelta(minutes=15)


def window_micros(window: GraphWindow) -> int | None:
    """The window's length in microseconds (None: one graph); refuses a non-positive one."""
    if window is None:
        return None
    if window.total_seconds() <= 0:
        raise ValueError(f"graph window must be positive, got {window}")
    return int(window.total_seconds() * 1_000_000)


def window_number(window: GraphWindow, ts: str = "ts") -> pl.Expr:
    """Each flow's window number (0 for every flow without a window)."""
    micros = window_micros(window)
    if micros is None:
        return pl.lit(0, dtype=pl.Int64)
    return pl.col(ts).dt.epoch("us") // micros


def window_number_sql(window: GraphWindow, column: str = "ts") -> str:
    """The same window number in DuckDB SQL."""
    micros = window_micros(window)
    return f"(epoch_us({column}) // {micros})" if micros else "0"
