"""Helpers for the ingestion tests: produce records, read the stores back."""

import hashlib
from pathlib import Path

import duckdb

from nids_core.kafka.log import KafkaSettings, open_producer
from nids_devkit.replay import replay_files


def produce(broker, topic: str, values: list[bytes], partition_key: bytes | None = None) -> None:
    with open_producer("confluent", KafkaSettings(broker.bootstrap_servers, "producer")) as p:
        p.send_many(topic, [(partition_key, v) for v in values])


def replay(broker, topic: str, paths, **kw):
    with open_producer("confluent", KafkaSettings(broker.bootstrap_servers, "producer")) as p:
        return replay_files(paths, p, topic, **kw)


def hot_counts(tmp_path: Path) -> tuple[int, int, int]:
    """(rows in flows, distinct uids in flows, rows in quarantine)."""
    con = duckdb.connect(str(tmp_path / "hot.duckdb"), read_only=True)
    try:
        rows, uids = con.execute("SELECT count(*), count(DISTINCT uid) FROM flows").fetchone()
        q = con.execute("SELECT count(*) FROM quarantine").fetchone()[0]
        return rows, uids, q
    finally:
        con.close()


def table_digest(tmp_path: Path, table: str, order: str) -> str:
    con = duckdb.connect(str(tmp_path / "hot.duckdb"), read_only=True)
    try:
        cols = "* EXCLUDE (ingested_at)" if table == "flows" else "* EXCLUDE (quarantined_at)"
        rows = con.execute(f"SELECT {cols} FROM {table} ORDER BY {order}").fetchall()
    finally:
        con.close()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }
