"""A durable outbox for operational alerts (failed runs, failed checks, sensor health).

An alert is first written to the `alert_outbox` table (SQLite, one file shared by every
process of a deployment) under an idempotency key, then delivered by whoever calls
`deliver_due`: a delivery that fails is kept, its attempt counted and retried after an
exponential backoff, until the sink accepts it; nothing is dropped on an error. The mark
is set only after the sink answered 2xx, so delivery is at least once: a process killed
between the two sends it again, with the same `alert_id` in the body for the sink to drop.
Two deliverers (two daemons) do not send the same alert at once: each claims a row for a
lease before sending it.

The same table carries analysts' alerts (kind `finding:<sink>`, queued by
`nids_core.detection.triage`): `kind` tells them apart.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

OUTBOX_DDL = """
CREATE TABLE IF NOT EXISTS alert_outbox (
    alert_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    claimed_until REAL NOT NULL DEFAULT 0,
    delivered_at REAL,
    last_error TEXT
)
"""
_PENDING_INDEX = (
    "CREATE INDEX IF NOT EXISTS alert_outbox_pending ON alert_outbox (next_attempt_at) "
    "WHERE delivered_at IS NULL"
)
CLAIM_S = 60.0
OUTBOX_SCHEMA = (OUTBOX_DDL, _PENDING_INDEX)


@contextmanager
def open_shared_sqlite(
    path: Path, busy_timeout_s: float, schema: Sequence[str]
) -> Iterator[sqlite3.Connection]:
    """The deployment's shared SQLite file (WAL, fully synced, autocommit), its `schema`
    created on first use."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        for ddl in schema:
            con.execute(ddl)
        yield con
    finally:
        con.close()


def retry_after_s(attempts: int, base_s: float = 5.0, cap_s: float = 600.0) -> float:
    """Wait before the next delivery of an alert that failed `attempts` times."""
    return min(cap_s, base_s * 2 ** max(0, attempts - 1))


@dataclass(frozen=True)
class Delivery:
    delivered: int
    failed: int
    pending: int
    errors: list[str]


@dataclass(frozen=True)
class PendingAlert:
    alert_id: str
    kind: str
    payload: dict
    attempts: int
    last_error: str | None


class AlertOutbox:
    """The outbox in the SQLite file at `path` (created with its table on first use)."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with open_shared_sqlite(self.path, self.busy_timeout_s, OUTBOX_SCHEMA) as con:
            yield con

    def enqueue(self, alert_id: str, kind: str, payload: dict, now: float | None = None) -> bool:
        """Store an alert for delivery; False when one with that id is already stored (an
        alert raised twice is delivered once)."""
        now = time.time() if now is None else now
        body = json.dumps({**payload, "alert_id": alert_id, "kind": kind}, default=str)
        with self._connect() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO alert_outbox (alert_id, kind, payload, created_at, "
                "next_attempt_at) VALUES (?, ?, ?, ?, ?)",
                (alert_id, kind, body, now, now),
            )
            return cur.rowcount == 1

    def _claim(
        self, con: sqlite3.Connection, now: float, limit: int, kinds: Sequence[str] | None
    ) -> list[tuple]:
        """Claim due rows whose kind is one of `kinds` (all kinds: None); a kind ending in
        `*` names every kind it begins, one starting with `!` every kind it does not name."""
        where, params = "", []
        if kinds is not None:
            parts = []
            for k in kinds:
                negate, k = k.startswith("!"), k.removeprefix("!")
                op = (
                    ("NOT LIKE" if negate else "LIKE")
                    if k.endswith("*")
                    else ("!=" if negate else "=")
                )
                parts.append(f"kind {op} ?")
                params.append(k[:-1] + "%" if k.endswith("*") else k)
            where = f" AND ({' OR '.join(parts) or 'false'})"
        con.execute("BEGIN IMMEDIATE")
        try:
            rows = con.execute(
                "SELECT alert_id, payload, attempts FROM alert_outbox "
                "WHERE delivered_at IS NULL AND next_attempt_at <= ? AND claimed_until <= ?"
                f"{where} ORDER BY created_at, alert_id LIMIT ?",
                (now, now, *params, limit),
            ).fetchall()
            con.executemany(
                "UPDATE alert_outbox SET claimed_until = ? WHERE alert_id = ?",
                [(now + CLAIM_S, r[0]) for r in rows],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return rows

    def deliver_due(
        self,
        send: Callable[[dict], object],
        now: float | None = None,
        limit: int = 100,
        kinds: Sequence[str] | None = None,
    ) -> Delivery:
        """Send every alert that is due, oldest first, marking each delivered as the sink
        accepts it; a failure is counted and its alert retried after `retry_after_s`.
        After the first failure the rest wait too (the sink is likely down: no storm).
        `kinds` limits it to the rows of one sink (see `_claim`), so one sink that is down
        does not hold back another."""
        now = time.time() if now is None else now
        delivered = failed = 0
        errors: list[str] = []
        with self._connect() as con:
            rows = self._claim(con, now, limit, kinds)
            for i, (alert_id, payload, _) in enumerate(rows):
                try:
                    send(json.loads(payload))
                except Exception as exc:  # any failure of the sink: retried, never lost
                    failed += 1
                    errors.append(f"{alert_id}: {exc}")
                    later = [(r[0], r[2]) for r in rows[i:]]
                    con.executemany(
                        "UPDATE alert_outbox SET attempts = attempts + ?, last_error = ?, "
                        "next_attempt_at = ?, claimed_until = 0 WHERE alert_id = ?",
                        [
                            (
                                1 if j == 0 else 0,
                                str(exc)[:500] if j == 0 else None,
                                now + retry_after_s(n + 1),
                                aid,
                            )
                            for j, (aid, n) in enumerate(later)
                        ],
                    )
                    break
                con.execute(
                    "UPDATE alert_outbox SET delivered_at = ?, attempts = attempts + 1, "
                    "last_error = NULL, claimed_until = 0 WHERE alert_id = ?",
                    (time.time(), alert_id),
                )
                delivered += 1
            pending = con.execute(
                "SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL"
            ).fetchone()[0]  # every sink's
        return Delivery(delivered, failed, int(pending), errors)

    def pending(self) -> list[PendingAlert]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT alert_id, kind, payload, attempts, last_error FROM alert_outbox "
                "WHERE delivered_at IS NULL ORDER BY created_at, alert_id"
            ).fetchall()
        return [PendingAlert(a, k, json.loads(p), n, e) for a, k, p, n, e in rows]

    def counts(self) -> dict[str, int]:
        with self._connect() as con:
            total, delivered = con.execute(
                "SELECT count(*), count(delivered_at) FROM alert_outbox"
            ).fetchone()
        return {"total": int(total), "delivered": int(delivered)}
