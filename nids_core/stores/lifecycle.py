"""Hot-data lifecycle: flows leave the hot table only once the cold store holds them.

For each UTC day with hot flows older than the retention cutoff: the day's cold partition
must exist and contain every one of those flows (by uid). If it does not, it is rebuilt
from the landing zone first; if it still does not, the day is skipped with a reason and
nothing is deleted. The day's predictions are merged into the cold predictions before the
hot rows (flows and their predictions) are deleted, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
import polars as pl

from nids_core.stores.cold import ColdStore
from nids_core.stores.hot import PREDICTION_COLUMNS, transaction


@dataclass(frozen=True)
class DayExpiry:
    day: str
    old_hot_flows: int
    rebuilt_cold: bool
    deleted_flows: int
    deleted_predictions: int
    exported_predictions: int
    skipped_reason: str | None


def _in_day(column: str) -> str:
    """Rows older than the cutoff on one UTC day (parameters: cutoff, day)."""
    return f"{column} < ? AND CAST(timezone('UTC', {column}) AS DATE) = ?"


def _missing_from_cold(store: ColdStore, day: str, uids: pl.Series) -> int:
    if not store.cold_day_exists(day):
        return uids.len()
    cold = store.read_cold_day(day)["uid"]
    return int((~uids.is_in(cold.implode())).sum())


def remove_uids_stored_twice(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """Keep one row per uid in `flows` (the lowest Kafka provenance, as the upsert would)
    and in `predictions` (the first made), in one transaction; returns the rows removed
    from each. The per-batch upsert finds every copy of a record, which carries the same
    uid and ts; a record sent again with *another* ts (a sensor that re-stamps it) is found
    only here, so the hot table holds it twice until this hourly pass."""
    with transaction(con):
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _twice AS SELECT uid FROM flows GROUP BY uid "
            "HAVING count(*) > 1"
        )
        flows = con.execute(
            'DELETE FROM flows f USING (SELECT uid, topic, "partition", "offset", '
            'row_number() OVER (PARTITION BY uid ORDER BY topic, "partition", "offset") AS n '
            "FROM flows WHERE uid IN (SELECT uid FROM _twice)) x "
            "WHERE x.n > 1 AND f.uid = x.uid AND f.topic = x.topic "
            'AND f."partition" = x."partition" AND f."offset" = x."offset"'
        ).fetchone()[0]
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _twice AS SELECT uid FROM predictions GROUP BY uid "
            "HAVING count(*) > 1"
        )
        predictions = con.execute(
            "DELETE FROM predictions p USING (SELECT uid, predicted_at, min(predicted_at) "
            "OVER (PARTITION BY uid) AS first_at FROM predictions "
            "WHERE uid IN (SELECT uid FROM _twice)) x "
            "WHERE p.uid = x.uid AND p.predicted_at = x.predicted_at "
            "AND x.predicted_at > x.first_at"
        ).fetchone()[0]
        con.execute("DROP TABLE _twice")
    return int(flows), int(predictions)


IMPLAUSIBLE_REASON = "ts outside the plausible window (found in the hot table)"


def quarantine_implausible(
    con: duckdb.DuckDBPyConnection, earliest: datetime, latest: datetime
) -> int:
    """Move hot flows whose `ts` lies outside [earliest, latest] (the plausible window was
    narrowed after they were stored) to `quarantine`, with their predictions removed, in one
    transaction. Such a row never ages past the retention cutoff and has no cold partition;
    left in place, it would stay in the hot table for good. The row itself is kept, as JSON,
    in the quarantine's `raw` column."""
    where = "ts < $earliest OR ts > $latest"
    params = {"earliest": earliest, "latest": latest}
    with transaction(con):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _implausible AS SELECT * FROM flows WHERE {where}",
            params,
        )
        moved = con.execute(
            'INSERT INTO quarantine (topic, "partition", "offset", raw, error, quarantined_at) '
            'SELECT topic, "partition", "offset", '
            "CAST(to_json(i) AS VARCHAR)::BLOB, $reason, now() FROM _implausible i",
            {"reason": IMPLAUSIBLE_REASON},
        ).fetchone()[0]
        con.execute("DELETE FROM predictions WHERE uid IN (SELECT uid FROM _implausible)")
        con.execute("DELETE FROM flows WHERE uid IN (SELECT uid FROM _implausible)")
        con.execute("DROP TABLE _implausible")
    return int(moved)


def expire_hot_data(
    con: duckdb.DuckDBPyConnection, store: ColdStore, cutoff: datetime
) -> list[DayExpiry]:
    days = con.execute(
        "SELECT CAST(timezone('UTC', ts) AS DATE) AS d, count(*) FROM flows WHERE ts < ? "
        "GROUP BY 1 ORDER BY 1",
        [cutoff],
    ).fetchall()
    results = []
    for day_value, count in days:
        day = day_value.isoformat()
        in_day = _in_day("ts")
        uids = con.execute(f"SELECT uid FROM flows WHERE {in_day}", [cutoff, day_value]).pl()["uid"]
        missing = _missing_from_cold(store, day, uids)
        rebuilt = False
        if missing:
            store.rewrite_cold_day(day)
            rebuilt = True
            missing = _missing_from_cold(store, day, uids)
        if missing:
            results.append(
                DayExpiry(
                    day,
                    int(count),
                    rebuilt,
                    0,
                    0,
                    0,
                    f"{missing} of {count} flows are not in cold partition {day}"
                    + (" even after rebuilding it from the landing zone" if rebuilt else ""),
                )
            )
            continue
        predictions = con.execute(
            f"SELECT {', '.join(f'p.{c}' for c in PREDICTION_COLUMNS)} FROM predictions p "
            "JOIN flows f USING (uid) WHERE " + _in_day("f.ts"),
            [cutoff, day_value],
        ).pl()
        exported = store.merge_predictions(day, predictions) if predictions.height else 0
        with transaction(con):
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _expired AS SELECT uid FROM flows WHERE {in_day}",
                [cutoff, day_value],
            )
            deleted_p = con.execute(
                "DELETE FROM predictions WHERE uid IN (SELECT uid FROM _expired)"
            ).fetchone()[0]
            deleted_f = con.execute(
                "DELETE FROM flows WHERE uid IN (SELECT uid FROM _expired)"
            ).fetchone()[0]
            con.execute("DROP TABLE _expired")
        results.append(
            DayExpiry(day, int(count), rebuilt, int(deleted_f), int(deleted_p), exported, None)
        )
    return results
