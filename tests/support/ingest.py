"""Helpers for the ingestion tests: a good Zeek JSON record and its variants, produce
records, read the stores and the committed offset back."""

import hashlib
import json
from pathlib import Path

import duckdb
from dagster import AssetKey

from nids_core.kafka.log import KafkaSettings, open_client, open_producer
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


GOOD = {
    "ts": 1575413096.052279,
    "uid": "CH53301MTU21BMj2Bj",
    "id.orig_h": "10.18.20.97",
    "id.orig_p": 49187,
    "id.resp_h": "10.18.20.8",
    "id.resp_p": 88,
    "proto": "tcp",
    "service": "krb_tcp",
    "duration": 0.0012,
    "orig_bytes": 242,
    "resp_bytes": 283,
    "conn_state": "RSTR",
    "missed_bytes": 0,
    "history": "ShADdFar",
    "orig_pkts": 4,
    "orig_ip_bytes": 414,
    "resp_pkts": 4,
    "resp_ip_bytes": 455,
}


def rec(**changes) -> bytes:
    d = {**GOOD, **changes}
    return json.dumps({k: v for k, v in d.items() if v is not ...}).encode()


def committed(broker, topic, partition=0):
    with open_client(
        "kafka-python", KafkaSettings(broker.bootstrap_servers, f"nids-etl-{topic}")
    ) as c:
        return c.committed(topic, [partition])[partition]


def latest_metadata(instance, key):
    event = instance.get_latest_materialization_event(AssetKey(key))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}
