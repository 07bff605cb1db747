"""An alert as the SOC's tools read it: an OCSF Detection Finding (class 2004) and an ECS
document (`event.kind: alert`). `alert` is a dict of the `analyst_alerts` row plus
`evidence` (its evidence rows), `status` and `revision` (1: created; more: updated)."""

from __future__ import annotations

import json
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version

from nids_core.detection.alerts import severity_id

PRODUCT = "nids-platform"
OCSF_VERSION = "1.5.0"
ECS_VERSION = "8.17.0"
DETECTION_FINDING = 2004
FINDINGS_CATEGORY = 2
# OCSF status_id of our statuses: New, In Progress, Resolved.
_OCSF_STATUS = {"new": (1, "New"), "acknowledged": (2, "In Progress"), "closed": (4, "Resolved")}


def _product_version() -> str:
    try:
        return version(PRODUCT)
    except PackageNotFoundError:
        return "0+unknown"


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def flow_uids(alert: dict) -> list[str]:
    return sorted({u for e in alert["evidence"] for u in e["uids"]})


def _evidence_summary(e: dict) -> dict:
    why = e["why"] if isinstance(e["why"], dict) else json.loads(e["why"])
    return {
        "evidence_id": e["evidence_id"],
        "detector": e["detector"],
        "description": e["description"],
        "threat_level": e["threat_level"],
        "confidence": e["confidence"],
        "peers": list(e["peers"]),
        "ports": list(e["ports"]),
        "flows": e["flows"],
        "why": why,
    }


def to_ocsf(alert: dict) -> dict:
    revision = int(alert.get("revision", 1))
    activity_id, activity = (1, "Create") if revision == 1 else (2, "Update")
    if alert.get("status") == "closed":
        activity_id, activity = 3, "Close"
    sid, sname = severity_id(alert["severity"])
    status_id, status = _OCSF_STATUS[alert.get("status", "new")]
    evidence = [_evidence_summary(e) for e in alert["evidence"]]
    return {
        "activity_id": activity_id,
        "activity_name": activity,
        "category_uid": FINDINGS_CATEGORY,
        "category_name": "Findings",
        "class_uid": DETECTION_FINDING,
        "class_name": "Detection Finding",
        "type_uid": DETECTION_FINDING * 100 + activity_id,
        "type_name": f"Detection Finding: {activity}",
        "time": _ms(alert["last_seen"]),
        "start_time": _ms(alert["first_seen"]),
        "end_time": _ms(alert["last_seen"]),
        "severity_id": sid,
        "severity": sname,
        "status_id": status_id,
        "status": status,
        "confidence_score": round(100 * max(e["confidence"] for e in evidence)),
        "risk_score": int(alert["severity"]),
        "count": len(evidence),
        "message": alert["title"],
        "metadata": {
            "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": _product_version()},
            "version": OCSF_VERSION,
            "uid": f"{alert['alert_id']}:{revision}",
            "sequence": revision,
            "log_name": "nids.alerts",
        },
        "finding_info": {
            "uid": alert["alert_id"],
            "title": alert["title"],
            "desc": "; ".join(e["description"] for e in evidence),
            "types": list(alert["detectors"]),
            "first_seen_time": _ms(alert["first_seen"]),
            "last_seen_time": _ms(alert["last_seen"]),
            "related_events": [
                {"uid": u, "type": "zeek.conn", "product_uid": "zeek"} for u in flow_uids(alert)
            ],
            "data_sources": ["zeek conn.log"],
        },
        "observables": [{"name": "src_endpoint.ip", "type_id": 2, "value": alert["host"]}],
        "evidences": [{"name": e["detector"], "data": e} for e in evidence],
        "unmapped": {
            "nids": {
                "revision": revision,
                "score": alert["score"],
                "window_start": alert["window_start"].isoformat(),
                "window_end": alert["window_end"].isoformat(),
                "suppressed_evidence": alert["suppressed_evidence"],
            }
        },
    }


def to_ecs(alert: dict) -> dict:
    revision = int(alert.get("revision", 1))
    evidence = [_evidence_summary(e) for e in alert["evidence"]]
    peers = sorted({p for e in evidence for p in e["peers"]})
    ports = sorted({p for e in evidence for p in e["ports"]})
    doc = {
        "@timestamp": alert["last_seen"].isoformat(),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "id": alert["alert_id"],
            "action": "created" if revision == 1 else "updated",
            "severity": int(alert["severity"]),
            "risk_score": float(alert["severity"]),
            "start": alert["first_seen"].isoformat(),
            "end": alert["last_seen"].isoformat(),
            "dataset": "nids.alerts",
            "module": "nids",
            "sequence": revision,
        },
        "observer": {"product": PRODUCT, "vendor": PRODUCT, "type": "ids"},
        "source": {"ip": alert["host"]},
        "rule": {"name": " + ".join(alert["detectors"]), "description": alert["title"]},
        "message": alert["title"],
        "tags": list(alert["detectors"]),
        "nids": {
            "alert_id": alert["alert_id"],
            "revision": revision,
            "status": alert.get("status", "new"),
            "score": alert["score"],
            "flow_uids": flow_uids(alert),
            "peers": peers,
            "ports": ports,
            "evidence": evidence,
        },
    }
    if len(peers) == 1:
        doc["destination"] = {"ip": peers[0]}
    return doc
