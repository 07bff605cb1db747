"""`nids label`: record analysts' labels on stored live flows, or refuse and write nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl

from nids_core.stores.cold import ColdStore
from nids_core.stores.hot import read_only_query
from nids_core.stores.hot_backend import HotBackend, as_backend
from nids_core.training_data.analyst_labels import LabelEntry, LabelError, check_names, write_labels

_COLUMNS = ["uid", "ts", "orig_h", "resp_h"]
_SCHEMA = {
    "uid": pl.String(),
    "ts": pl.Datetime("us", "UTC"),
    "orig_h": pl.String(),
    "resp_h": pl.String(),
}


def _hot_candidates(database: HotBackend | str, entries: Sequence[LabelEntry]) -> pl.DataFrame:
    import duckdb

    if not as_backend(database).exists():
        return pl.DataFrame(schema=_SCHEMA)
    uids = [e.uid for e in entries if e.uid is not None]
    clauses, params = ["list_contains(?::VARCHAR[], uid)"], [uids]
    for e in entries:
        if e.host is not None:
            clauses.append("((orig_h = ? OR resp_h = ?) AND ts BETWEEN ? AND ?)")
            params += [e.host, e.host, e.start, e.end]
    sql = f"SELECT uid, ts, orig_h, resp_h FROM flows WHERE {' OR '.join(clauses)}"
    try:
        rows = read_only_query(database, sql, params=params)
    except duckdb.CatalogException:  # a hot file that never held flows
        return pl.DataFrame(schema=_SCHEMA)
    return pl.DataFrame(rows, schema=_SCHEMA, orient="row")


def _cold_candidates(store: ColdStore, entries: Sequence[LabelEntry]) -> pl.DataFrame:
    days = store.cold_days()
    if not any(e.uid is not None for e in entries):
        # Host ranges only: the days they cover (and a day either side: a flow is stored
        # on the day of its ts, which the range bounds).
        wanted = set()
        for e in entries:
            assert e.start is not None and e.end is not None
            d = e.start.date() - timedelta(days=1)
            while d <= e.end.date() + timedelta(days=1):
                wanted.add(d.isoformat())
                d += timedelta(days=1)
        days = [d for d in days if d in wanted]
    frames = [store.read_cold_day(d, _COLUMNS) for d in days]
    return pl.concat(frames) if frames else pl.DataFrame(schema=_SCHEMA)


def record_labels(
    entries: Sequence[LabelEntry], store: ColdStore, hot_database: HotBackend | str
) -> tuple[str, int]:
    """Write the entries as one new label file if every entry names at least one stored
    flow (hot table or cold store); else raise LabelError naming those that do not and
    write nothing. Returns (file, flows named)."""
    flows = pl.concat([_hot_candidates(hot_database, entries), _cold_candidates(store, entries)])
    missing, named = check_names(entries, flows)
    if missing:
        shown = "; ".join(missing[:10]) + (
            f"; and {len(missing) - 10} more" if len(missing) > 10 else ""
        )
        raise LabelError(f"no stored flow for: {shown} (nothing was written)")
    return write_labels(store, entries, datetime.now(UTC)), named
