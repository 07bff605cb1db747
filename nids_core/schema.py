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
MAX_PORT = 65535
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

# The hot table `flows`: a flow, its Kafka provenance and when it was stored.
HOT_FLOW_SCHEMA: dict[str, pl.DataType] = {
    **FLOW_SCHEMA,
    **PROVENANCE_SCHEMA,
    "ingested_at": pl.Datetime("us", "UTC"),
}
HOT_NOT_NULL: tuple[str, ...] = (*REQUIRED_COLUMNS, *PROVENANCE_SCHEMA, "ingested_at")


def duckdb_type(dtype: pl.DataType) -> str:
    """DuckDB's name for a column type of the flow schema."""
    if isinstance(dtype, pl.Datetime):
        return "TIMESTAMPTZ" if dtype.time_zone else "TIMESTAMP"
    if isinstance(dtype, pl.List):
        return f"{duckdb_type(dtype.inner)}[]"
    names = {
        pl.String: "VARCHAR",
        pl.Int32: "INTEGER",
        pl.Int64: "BIGINT",
        pl.Float64: "DOUBLE",
        pl.Boolean: "BOOLEAN",
        pl.Binary: "BLOB",
    }
    for kind, name in names.items():
        if isinstance(dtype, kind):
            return name
    raise TypeError(f"no DuckDB type for {dtype}")


def _quoted(name: str) -> str:
    return f'"{name}"' if name in ("partition", "offset") else name


def flows_ddl() -> str:
    """CREATE TABLE for the hot `flows` table, from HOT_FLOW_SCHEMA."""
    columns = ",\n".join(
        f"    {_quoted(name)} {duckdb_type(dtype)}" + (" NOT NULL" if name in HOT_NOT_NULL else "")
        for name, dtype in HOT_FLOW_SCHEMA.items()
    )
    return f"CREATE TABLE IF NOT EXISTS flows (\n{columns}\n)"


def hot_flow_columns() -> list[tuple[str, str]]:
    """(name, type) of `flows` as DuckDB's information_schema spells them."""
    spelled = {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}
    return [
        (name, spelled.get(duckdb_type(dtype), duckdb_type(dtype)))
        for name, dtype in HOT_FLOW_SCHEMA.items()
    ]


def value_rules_sql() -> dict[str, str]:
    """The value rules ingest quarantines on, as SQL conditions a stored row must never meet
    ($earliest and $latest bound a plausible ts)."""
    return {
        "missing_required": " OR ".join(f"{c} IS NULL" for c in REQUIRED_COLUMNS),
        "port_out_of_range": " OR ".join(f"{c} NOT BETWEEN 0 AND {MAX_PORT}" for c in PORT_COLUMNS),
        "negative_volume": " OR ".join(f"{c} < 0" for c in NON_NEGATIVE_COLUMNS),
        "unknown_label": (
            f"label IS NOT NULL AND label NOT IN ('{LABEL_BENIGN}', '{LABEL_MALICIOUS}')"
        ),
        "non_finite_duration": "duration IS NOT NULL AND NOT isfinite(duration)",
        "ts_outside_plausible_window": "ts < $earliest OR ts > $latest",
    }
