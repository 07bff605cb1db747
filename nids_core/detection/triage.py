"""The analysts' side of alerts, in the SQLite file the alert outbox lives in (one file
every process of a deployment shares, written while the hot store is busy): each alert's
status (new, acknowledged, closed with a verdict), the allow-list, and the revision of
each alert last queued for delivery, queued in the same transaction as its outbox rows so
a crash between the two cannot lose or double a delivery."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nids_core.detection.allow_list import AllowEntry, AllowListError
from nids_core.serving.outbox import OUTBOX_SCHEMA, open_shared_sqlite

STATUSES = ("new", "acknowledged", "closed")
VERDICTS = ("true-positive", "false-positive")
SINKS = ("kafka", "file", "webhook")
FINDING_KIND = "finding:"  # outbox kind prefix: finding:<sink>

TRIAGE_DDL = (
    """CREATE TABLE IF NOT EXISTS alert_status (
        alert_id TEXT PRIMARY KEY, status TEXT NOT NULL, verdict TEXT,
        changed_by TEXT, why TEXT, changed_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS allow_list (
        entry_id TEXT PRIMARY KEY, host TEXT, peer TEXT, port INTEGER, detector TEXT,
        added_by TEXT NOT NULL, why TEXT NOT NULL, expires TEXT, added_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS finding_revisions (
        alert_id TEXT PRIMARY KEY, digest TEXT NOT NULL, revision INTEGER NOT NULL,
        queued_at REAL NOT NULL)""",
)


class TriageError(ValueError):
    """A triage command that cannot be done; nothing was written."""


@dataclass(frozen=True)
class AlertStatus:
    status: str
    verdict: str | None = None
    by: str | None = None
    why: str | None = None


class TriageStore:
    def __init__(self, path: str | Path, busy_timeout_s: float = 30.0):
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with open_shared_sqlite(
            self.path, self.busy_timeout_s, (*TRIAGE_DDL, *OUTBOX_SCHEMA)
        ) as con:
            yield con

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # -- status -------------------------------------------------------------------------
    def statuses(self, alert_ids: Sequence[str] | None = None) -> dict[str, AlertStatus]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT alert_id, status, verdict, changed_by, why FROM alert_status"
            ).fetchall()
        wanted = None if alert_ids is None else set(alert_ids)
        return {
            a: AlertStatus(s, v, b, w) for a, s, v, b, w in rows if wanted is None or a in wanted
        }

    def set_status(
        self,
        alert_id: str,
        status: str,
        by: str,
        why: str | None = None,
        verdict: str | None = None,
    ) -> None:
        if status not in STATUSES:
            raise TriageError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        if verdict is not None and verdict not in VERDICTS:
            raise TriageError(f"verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
        if status == "closed" and (verdict is None or not (why or "").strip()):
            raise TriageError("closing an alert needs --verdict and --why")
        if not by.strip():
            raise TriageError("say who you are (--by)")
        with self._transaction() as con:
            con.execute(
                "INSERT INTO alert_status VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id) DO "
                "UPDATE SET status = excluded.status, verdict = excluded.verdict, "
                "changed_by = excluded.changed_by, why = excluded.why, "
                "changed_at = excluded.changed_at",
                (alert_id, status, verdict, by, why, time.time()),
            )

    # -- allow-list -----------------------------------------------------------------------
    def allow_entries(self) -> list[AllowEntry]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT entry_id, host, peer, port, detector, added_by, why, expires "
                "FROM allow_list ORDER BY added_at, entry_id"
            ).fetchall()
        return [
            AllowEntry(
                entry_id=i,
                host=h,
                peer=p,
                port=port,
                detector=d,
                by=b,
                why=w,
                expires=datetime.fromisoformat(e) if e else None,
            )
            for i, h, p, port, d, b, w, e in rows
        ]

    def add_allow(self, entry: AllowEntry) -> str:
        with self._transaction() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO allow_list VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.entry_id,
                    entry.host,
                    entry.peer,
                    entry.port,
                    entry.detector,
                    entry.by,
                    entry.why,
                    entry.expires.isoformat() if entry.expires else None,
                    time.time(),
                ),
            )
            if cur.rowcount == 0:
                raise AllowListError(f"an entry for the same match exists: {entry.entry_id}")
        return entry.entry_id

    def remove_allow(self, entry_id: str) -> None:
        with self._transaction() as con:
            if con.execute("DELETE FROM allow_list WHERE entry_id = ?", (entry_id,)).rowcount == 0:
                raise AllowListError(f"no allow-list entry {entry_id!r}")

    # -- delivery -------------------------------------------------------------------------
    def revisions(self) -> dict[str, tuple[str, int]]:
        with self._connect() as con:
            rows = con.execute("SELECT alert_id, digest, revision FROM finding_revisions")
            return {a: (d, r) for a, d, r in rows.fetchall()}

    def queue_finding(
        self, alert_id: str, digest: str, sinks: Sequence[str], payload_for_revision
    ) -> int | None:
        """Queue the alert for every sink unless this digest was queued already; returns
        the new revision (1: a new alert, more: an update) or None. `payload_for_revision`
        builds the payload of a revision."""
        now = time.time()
        with self._transaction() as con:
            row = con.execute(
                "SELECT digest, revision FROM finding_revisions WHERE alert_id = ?", (alert_id,)
            ).fetchone()
            if row is not None and row[0] == digest:
                return None
            revision = 1 if row is None else row[1] + 1
            payload = payload_for_revision(revision)
            for sink in sinks:
                key = f"{sink}:{alert_id}:{revision}"
                body = json.dumps({**payload, "alert_id": key, "kind": FINDING_KIND + sink})
                con.execute(
                    "INSERT OR IGNORE INTO alert_outbox (alert_id, kind, payload, created_at, "
                    "next_attempt_at) VALUES (?, ?, ?, ?, ?)",
                    (key, FINDING_KIND + sink, body, now, now),
                )
            con.execute(
                "INSERT INTO finding_revisions VALUES (?, ?, ?, ?) ON CONFLICT (alert_id) DO "
                "UPDATE SET digest = excluded.digest, revision = excluded.revision, "
                "queued_at = excluded.queued_at",
                (alert_id, digest, revision, now),
            )
        return revision


def utc_now() -> datetime:
    return datetime.now(UTC)
