"""`nids alerts` and `nids allow`: the analyst's view of alerts (read from the hot store
read-only, so they work while the platform writes) and the triage actions (status and
allow-list, written to the triage store, never to the hot store)."""

from __future__ import annotations

import json
from datetime import datetime

import click

from nids_core.detection.delivery import read_alerts
from nids_core.detection.formats import to_ecs, to_ocsf
from nids_core.detection.triage import TriageError, TriageStore
from nids_core.stores.hot import read_only_query
from nids_core.stores.hot_backend import HotBackend, as_backend
from nids_core.training_data.analyst_labels import LabelEntry, LabelError, parse_time

VERDICT_LABEL = {"true-positive": "malicious", "false-positive": "benign"}


def _time(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_time(text)
    except LabelError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


def query_alerts(
    database: HotBackend | str,
    since: str | None = None,
    until: str | None = None,
    host: str | None = None,
    min_severity: int | None = None,
    alert_id: str | None = None,
) -> list[dict]:
    """Alerts with their evidence, newest first, read while writers go on."""

    lo, hi = _time(since, "--since"), _time(until, "--until")
    if lo and hi and lo > hi:
        raise click.BadParameter(f"--since {since} is after --until {until}", param_hint="--since")
    hot = as_backend(database)
    if not hot.exists():
        return []
    clauses, params = ["true"], {}
    if lo:
        clauses.append("a.last_seen >= $lo")
        params["lo"] = lo
    if hi:
        clauses.append("a.first_seen <= $hi")
        params["hi"] = hi
    if host:
        clauses.append("a.host = $host")
        params["host"] = host
    if min_severity is not None:
        clauses.append("a.severity >= $sev")
        params["sev"] = min_severity
    if alert_id:
        clauses.append("a.alert_id = $id")
        params["id"] = alert_id
    with hot.connect(read_only=True) as con:
        return read_alerts(con, " AND ".join(clauses), params)


def with_status(alerts: list[dict], triage: TriageStore) -> list[dict]:
    statuses = triage.statuses([a["alert_id"] for a in alerts])
    revisions = triage.revisions()
    for a in alerts:
        s = statuses.get(a["alert_id"])
        a["status"] = s.status if s else "new"
        a["verdict"] = s.verdict if s else None
        a["revision"] = revisions.get(a["alert_id"], (None, 1))[1]
    return alerts


def one_alert(database: HotBackend | str, triage: TriageStore, alert_id: str) -> dict:
    found = query_alerts(database, alert_id=alert_id)
    if not found:
        raise click.ClickException(f"no alert {alert_id!r} (nids alerts list shows them)")
    return with_status(found, triage)[0]


def show_text(alert: dict, database: HotBackend | str) -> str:
    lines = [
        f"alert {alert['alert_id']}  severity {alert['severity']}  status {alert['status']}"
        + (f" ({alert['verdict']})" if alert.get("verdict") else ""),
        f"  {alert['title']}",
        f"  host {alert['host']}  window {alert['window_start']} .. {alert['window_end']}",
        f"  first seen {alert['first_seen']}  last seen {alert['last_seen']}  "
        f"flows {alert['flows']}  suppressed evidence {alert['suppressed_evidence']}",
    ]
    for e in alert["evidence"]:
        lines += [
            f"  evidence {e['evidence_id']} [{e['detector']}] threat {e['threat_level']:.2f} x "
            f"confidence {e['confidence']:.2f}",
            f"    {e['description']}",
            f"    why: {e['why']}",
        ]
    uids = sorted({u for e in alert["evidence"] for u in e["uids"]})
    shown = uids[:20]
    if shown and as_backend(database).exists():
        rows = read_only_query(
            database,
            "SELECT uid, ts, orig_h, orig_p, resp_h, resp_p, proto, conn_state, duration "
            "FROM flows WHERE list_contains(?::VARCHAR[], uid) ORDER BY ts",
            params=[shown],
        )
        lines.append(f"  flows ({len(uids)}; first {len(rows)} still hot):")
        lines += [
            f"    {uid} {ts} {oh}:{op} -> {rh}:{rp}/{proto} {state} {dur}"
            for uid, ts, oh, op, rh, rp, proto, state, dur in rows
        ]
    return "\n".join(lines)


def export_lines(alerts: list[dict], fmt: str) -> list[str]:
    build = to_ocsf if fmt == "ocsf" else to_ecs
    return [json.dumps(build(a), sort_keys=True, default=str) for a in alerts]


def close_alert(
    alert: dict, triage: TriageStore, verdict: str, by: str, why: str, record_labels
) -> int:
    """Close with a verdict and label the alert's flows (true-positive: malicious,
    false-positive: benign) through the labels store; the label is written first, so a
    failure leaves the alert open and nothing half-done."""
    if verdict not in VERDICT_LABEL:
        raise TriageError(f"verdict {verdict!r} is not one of {', '.join(VERDICT_LABEL)}")
    if not by.strip() or not why.strip():
        raise TriageError("closing an alert needs --by and --why")
    uids = sorted({u for e in alert["evidence"] for u in e["uids"]})
    entries = [
        LabelEntry(
            verdict=VERDICT_LABEL[verdict],
            uid=u,
            by=by,
            why=f"alert {alert['alert_id']} closed {verdict}: {why}",
        )
        for u in uids
    ]
    named = record_labels(entries) if entries else 0
    triage.set_status(alert["alert_id"], "closed", by=by, why=why, verdict=verdict)
    return named
