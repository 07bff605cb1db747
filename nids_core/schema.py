"""The canonical flow schema: one typed polars schema for every Zeek input form."""

from __future__ import annotations

import polars as pl

# Zeek conn.log field name -> canonical column name (dots are awkward in SQL).
ZEEK_TO_CANONICAL: dict[str, str] = {
    "ts": "ts",
    "uid": "uid",
    "id.orig_h": "orig_h",
    "id.orig_p": "orig_p",
    "id.resp_h": "resp_h",
    "id.resp_p": "resp_p",
    "proto": "proto",
    "service": "service",
    "duration": "duration",
    "orig_bytes": "orig_bytes",
    "resp_bytes": "resp_bytes",
    "conn_state": "conn_state",
    "local_orig": "local_orig",
    "local_resp": "local_resp",
    "missed_bytes": "missed_bytes",
    "history": "history",
    "orig_pkts": "orig_pkts",
    "orig_ip_bytes": "orig_ip_bytes",
    "resp_pkts": "resp_pkts",
    "resp_ip_bytes": "resp_ip_bytes",
    "tunnel_parents": "tunnel_parents",
    "label": "label",
    "detailed-label": "detailed_label",
    # Not a Zeek field: `nids replay` adds the capture (network) a record came from.
    "capture": "capture",
}
CANONICAL_TO_ZEEK: dict[str, str] = {v: k for k, v in ZEEK_TO_CANONICAL.items()}

FLOW_SCHEMA: dict[str, pl.DataType] = {
    "ts": pl.Datetime("us", "UTC"),
    "uid": pl.String(),
    "orig_h": pl.String(),
    "orig_p": pl.Int32(),
    "resp_h": pl.String(),
    "resp_p": pl.Int32(),
    "proto": pl.String(),
    "service": pl.String(),
    "duration": pl.Float64(),
    "orig_bytes": pl.Int64(),
    "resp_bytes": pl.Int64(),
    "conn_state": pl.String(),
    "local_orig": pl.Boolean(),
    "local_resp": pl.Boolean(),
    "missed_bytes": pl.Int64(),
    "history": pl.String(),
    "orig_pkts": pl.Int64(),
    "orig_ip_bytes": pl.Int64(),
    "resp_pkts": pl.Int64(),
    "resp_ip_bytes": pl.Int64(),
    "tunnel_parents": pl.List(pl.String()),
    "label": pl.String(),
    "detailed_label": pl.String(),
    "capture": pl.String(),
}
FLOW_COLUMNS: list[str] = list(FLOW_SCHEMA)

# Fields a record cannot be used without: identity, time and the two graph endpoints.
REQUIRED_COLUMNS: tuple[str, ...] = ("uid", "ts", "orig_h", "orig_p", "resp_h", "resp_p", "proto")
INTEGER_COLUMNS: tuple[str, ...] = tuple(
    c for c, t in FLOW_SCHEMA.items() if t in (pl.Int32(), pl.Int64())
)
NON_NEGATIVE_COLUMNS: tuple[str, ...] = (
    "duration",
    "orig_bytes",
    "resp_bytes",
    "missed_bytes",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
)
PORT_COLUMNS: tuple[str, ...] = ("orig_p", "resp_p")
BOOLEAN_COLUMNS: tuple[str, ...] = ("local_orig", "local_resp")

LABEL_BENIGN = "benign"
LABEL_MALICIOUS = "malicious"

# Kafka provenance carried by every ingested row.
PROVENANCE_SCHEMA: dict[str, pl.DataType] = {
    "topic": pl.String(),
    "partition": pl.Int32(),
    "offset": pl.Int64(),
}

REJECT_SCHEMA: dict[str, pl.DataType] = {
    "position": pl.Int64(),
    "raw": pl.Binary(),
    "error": pl.String(),
}
