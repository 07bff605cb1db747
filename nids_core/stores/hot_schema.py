"""Every table of the hot store, in one place: their DDL and `ensure_schema`, which
creates those that do not exist. No table is ever migrated here: a hot store is made by
this version's DDL (it holds the last 24 h and can be rebuilt from the landing zone)."""

from __future__ import annotations

import re

import duckdb

from nids_core.schema import flows_ddl

# Generated from the flow schema, so the table, its schema check and the value rules
# cannot disagree.
FLOWS_DDL = flows_ddl()

# One row per uid, kept by the scoring run's anti-join (not a key index: an ART index
# over a day of uids costs seconds per insert and a gigabyte of memory). `ts` is the flow's,
# so the rows of a time window are found through its zone maps without reading `flows`.
PREDICTIONS_DDL = """
CREATE TABLE IF NOT EXISTS predictions (
    uid VARCHAR NOT NULL,
    score DOUBLE NOT NULL,
    predicted_label VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    predicted_at TIMESTAMPTZ NOT NULL,
    ts TIMESTAMPTZ
)
"""

# Where the last scoring run finished reading `flows` (its newest `ingested_at`).
SCORING_PROGRESS_DDL = """
CREATE TABLE IF NOT EXISTS scoring_progress (scored_through TIMESTAMPTZ NOT NULL)
"""

# Keyed by (topic, partition, offset, raw), not by offset alone: offsets are reused after a
# broker restart or a recreated topic, and the reject of another record at a reused offset
# must be kept beside the earlier one. A key index would not cover `raw` (a BLOB), and every
# writer holds the duckdb pool, so the key is kept by the insert itself.
QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS quarantine (
    topic VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    raw BLOB,
    error VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL
)
"""

# The model's attack flows counted per source host and window (`alerts` asset).
ALERTS_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    orig_h VARCHAR NOT NULL,
    attack_flows BIGINT NOT NULL,
    flows BIGINT NOT NULL,
    max_score DOUBLE NOT NULL,
    mean_score DOUBLE NOT NULL,
    distinct_peers BIGINT NOT NULL,
    distinct_peer_ports BIGINT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    model_versions VARCHAR NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (window_start, orig_h)
)
"""

# Where the last refresh finished reading `predictions` (its newest `predicted_at`), and
# the newest flow ts among them (the newest window).
ALERTS_PROGRESS_DDL = """
CREATE TABLE IF NOT EXISTS alerts_progress (
    refreshed_through TIMESTAMPTZ NOT NULL,
    newest_ts TIMESTAMPTZ
)
"""

# One row per detection (nids_core.detection.evidence).
EVIDENCE_DDL = """
CREATE TABLE IF NOT EXISTS evidence (
    evidence_id VARCHAR PRIMARY KEY,
    detector VARCHAR NOT NULL,
    host VARCHAR NOT NULL,
    peers VARCHAR[] NOT NULL,
    ports INTEGER[] NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    flows BIGINT NOT NULL,
    uids VARCHAR[] NOT NULL,
    threat_level DOUBLE NOT NULL,
    confidence DOUBLE NOT NULL,
    description VARCHAR NOT NULL,
    why VARCHAR NOT NULL,
    suppressed_by VARCHAR,
    refreshed_at TIMESTAMPTZ NOT NULL
)
"""

# Analysts' alerts: a host's evidence in a window, summed (nids_core.detection.alerts).
ALERT_DDL = """
CREATE TABLE IF NOT EXISTS analyst_alerts (
    alert_id VARCHAR PRIMARY KEY,
    host VARCHAR NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    score DOUBLE NOT NULL,
    severity INTEGER NOT NULL,
    detectors VARCHAR[] NOT NULL,
    evidence_ids VARCHAR[] NOT NULL,
    suppressed_evidence BIGINT NOT NULL,
    flows BIGINT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    title VARCHAR NOT NULL,
    digest VARCHAR NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL
)
"""

# When the day-level detectors (beacons, long connections) last ran: they read a day of
# flows per pair, so a scoring pass that follows the stream each second runs them at most
# every DAY_DETECTORS_EVERY; the window-level ones run on every refresh.
DETECTION_PROGRESS_DDL = """
CREATE TABLE IF NOT EXISTS detection_progress (day_detectors_at TIMESTAMPTZ NOT NULL)
"""

HOT_TABLES_DDL = (
    FLOWS_DDL,
    PREDICTIONS_DDL,
    QUARANTINE_DDL,
    ALERTS_DDL,
    SCORING_PROGRESS_DDL,
    ALERTS_PROGRESS_DDL,
    EVIDENCE_DDL,
    ALERT_DDL,
    DETECTION_PROGRESS_DDL,
)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the hot tables that do not exist."""
    for ddl in HOT_TABLES_DDL:
        con.execute(ddl)


HOT_TABLE_NAMES = tuple(
    re.search(r"CREATE TABLE IF NOT EXISTS (\w+)", ddl).group(1) for ddl in HOT_TABLES_DDL
)


def lake_ddl(ddl: str) -> str:
    """The DDL for DuckLake, which keeps no key constraints: the writers keep the keys
    (every alert table is rebuilt per window by one scoring run, `flows` and `quarantine`
    through the anti-joins and key locks)."""
    ddl = re.sub(r",\s*PRIMARY KEY \([^)]*\)", "", ddl)
    return ddl.replace(" PRIMARY KEY", " NOT NULL")


def ensure_lake_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the hot tables that do not exist, on a DuckLake, in one snapshot."""
    con.execute("BEGIN TRANSACTION")
    try:
        for ddl in HOT_TABLES_DDL:
            con.execute(lake_ddl(ddl))
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
