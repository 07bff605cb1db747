"""Queue each new or changed alert once for every sink, and the sinks that deliver them.

Queuing compares each alert's digest with the last one queued (the triage store), so it
is safe to run after every refresh, after a crash, or twice: a digest is queued once. The
outbox then delivers at least once per sink, each sink on its own (one that is down does
not hold back another), and each message carries the alert id and revision so a consumer
drops a repeat."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from nids_core.detection.formats import to_ecs, to_ocsf
from nids_core.detection.triage import TriageStore

_ALERT_SQL = """
SELECT a.*, list(e ORDER BY e.detector, e.evidence_id) AS evidence
FROM analyst_alerts a LEFT JOIN evidence e ON list_contains(a.evidence_ids, e.evidence_id)
WHERE {where}
GROUP BY ALL
ORDER BY a.last_seen DESC, a.alert_id
"""


def read_alerts(
    con: duckdb.DuckDBPyConnection,
    where: str = "true",
    params: dict | None = None,
    limit: int | None = None,
) -> list[dict]:
    """Alerts (as dicts, with their evidence rows) matching `where` on `analyst_alerts a`."""
    sql = _ALERT_SQL.format(where=where) + (f" LIMIT {int(limit)}" if limit else "")
    cur = con.execute(sql, params or {})
    names = [d[0] for d in cur.description]
    alerts = []
    for row in cur.fetchall():
        alert = dict(zip(names, row, strict=True))
        alert["evidence"] = [e for e in alert["evidence"] if e and e.get("evidence_id")]
        alerts.append(alert)
    return alerts


def chat_text(alert: dict) -> str:
    lines = [
        f":rotating_light: NIDS alert {alert['alert_id']} (severity {alert['severity']}): "
        f"{alert['title']}"
    ]
    lines += [f"- {e['detector']}: {e['description']}" for e in alert["evidence"][:5]]
    return "\n".join(lines)


def queue_deliveries(
    con: duckdb.DuckDBPyConnection, triage: TriageStore, sinks: Sequence[str]
) -> int:
    """Queue every alert whose digest was not queued yet; returns how many were queued."""
    if not sinks:
        return 0
    queued = triage.revisions()
    current = con.execute("SELECT alert_id, digest FROM analyst_alerts").fetchall()
    changed = [a for a, d in current if queued.get(a, (None,))[0] != d]
    if not changed:
        return 0
    statuses = triage.statuses(changed)
    n = 0
    for alert in read_alerts(con, "list_contains($ids, a.alert_id)", {"ids": changed}):
        status = statuses.get(alert["alert_id"])
        alert["status"] = status.status if status else "new"

        def payload(revision: int, alert: dict = alert) -> dict:
            full = {**alert, "revision": revision}
            return {
                "summary": alert["title"],
                "text": chat_text(full),
                "ocsf": to_ocsf(full),
                "ecs": to_ecs(full),
            }

        if triage.queue_finding(alert["alert_id"], alert["digest"], sinks, payload):
            n += 1
    return n


class FileSink:
    """NDJSON files a shipper tails: `<dir>/ocsf-<day>.ndjson` and `<dir>/ecs-<day>.ndjson`,
    one line per delivery, written and fsynced before the delivery is marked."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def send(self, payload: dict) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        day = datetime.now(UTC).date().isoformat()
        for fmt in ("ocsf", "ecs"):
            path = self.directory / f"{fmt}-{day}.ndjson"
            line = json.dumps(payload[fmt], sort_keys=True, default=str) + "\n"
            with open(path, "a", encoding="utf-8") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())


class KafkaSink:
    """Each alert as one message on `topic`, keyed by alert id (so a compacted topic keeps
    its newest revision), value the OCSF finding (or the ECS document)."""

    def __init__(self, producer, topic: str, fmt: str = "ocsf"):
        self.producer, self.topic, self.fmt = producer, topic, fmt

    def send(self, payload: dict) -> None:
        key = (
            payload[self.fmt]["finding_info"]["uid"]
            if self.fmt == "ocsf"
            else (payload["ecs"]["event"]["id"])
        )
        value = json.dumps(payload[self.fmt], sort_keys=True, default=str).encode()
        self.producer.send_many(self.topic, [(key.encode(), value)])
        self.producer.flush()
