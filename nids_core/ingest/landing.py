"""One micro-batch through the ingest path, as plain functions the Dagster assets call.

land_batch: read [start, end) of one partition, parse, write it to the landing zone.
load_batch_into_hot: upsert a landed batch into the hot store (flows + quarantine), one
transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb
import polars as pl

from nids_core.kafka.log import FlowLogClient
from nids_core.kafka.offsets import OffsetRange
from nids_core.stores.cold import BatchManifest, ColdStore, records_digest
from nids_core.stores.hot import (
    TsRanges,
    UpsertCounts,
    insert_quarantine,
    transaction,
    upsert_flows,
)
from nids_core.stores.hot_backend import HotBackend
from nids_core.zeek.json_log import DEFAULT_MAX_MESSAGE_BYTES, parse_json_records
from nids_core.zeek.plausibility import PlausibleTime


@dataclass(frozen=True)
class LandedBatch:
    manifest: BatchManifest
    read_seconds: float
    parse_seconds: float
    write_seconds: float
    reject_reasons: dict[str, int]


def land_batch(
    client: FlowLogClient,
    store: ColdStore,
    offsets: OffsetRange,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    read_timeout_s: float = 60.0,
    plausible: PlausibleTime | None = None,
) -> LandedBatch:
    """Read one offset range from Kafka and land it as Parquet (flows and rejects), named by
    the range and a digest of the records it held."""
    t0 = time.perf_counter()
    # Read whole, then parse whole: the parser's loops and the consumer's share the GIL,
    # so parsing on a thread while the next chunk is fetched does not pay.
    records = client.read_range(offsets, timeout_s=read_timeout_s)
    t1 = time.perf_counter()
    parsed = parse_json_records(records.values, records.offsets, max_message_bytes, plausible)
    provenance = [
        pl.lit(offsets.topic).alias("topic"),
        pl.lit(offsets.partition, dtype=pl.Int32).alias("partition"),
    ]
    flows = parsed.flows.with_columns(*provenance, pl.col("position").alias("offset"))
    rejects = parsed.rejects.with_columns(*provenance, pl.col("position").alias("offset"))
    t2 = time.perf_counter()
    digest = records_digest(flows, rejects)
    manifest = store.write_batch(offsets, len(records), flows, rejects, digest)
    t3 = time.perf_counter()
    reasons = (
        dict(rejects.group_by("error").len().sort("len", descending=True).head(10).iter_rows())
        if rejects.height
        else {}
    )
    return LandedBatch(
        manifest=manifest,
        read_seconds=t1 - t0,
        parse_seconds=t2 - t1,
        write_seconds=t3 - t2,
        reject_reasons=reasons,
    )


@dataclass(frozen=True)
class HotLoad:
    counts: UpsertCounts
    quarantined_new: int
    seconds: float
    uids: pl.Series
    rejects: pl.DataFrame
    ts_ranges: TsRanges  # where the batch's rows lie in `flows`


def upsert_batch(
    con: duckdb.DuckDBPyConnection,
    backend: HotBackend,
    flows: pl.DataFrame,
    rejects: pl.DataFrame,
) -> tuple[UpsertCounts, int]:
    """Upsert flows and quarantine rejects in one transaction; on a backend with concurrent
    writers the batch's uids and reject offsets are held while it commits, and a commit
    that loses to a concurrent delete is retried whole."""
    keys = pl.concat(
        [
            flows["uid"].cast(pl.String),
            rejects.select(pl.format("q:{}:{}:{}", "topic", "partition", "offset").alias("uid"))[
                "uid"
            ],
        ]
    )

    def upsert() -> tuple[UpsertCounts, int]:
        with transaction(con):
            return upsert_flows(con, flows), insert_quarantine(con, rejects)

    with backend.hold(con, keys):
        return backend.retrying(upsert)


def load_batch_into_hot(
    con: duckdb.DuckDBPyConnection,
    store: ColdStore,
    manifest: BatchManifest,
    backend: HotBackend,
) -> HotLoad:
    """Upsert a landed batch into `flows` and `quarantine` (`upsert_batch`)."""
    t0 = time.perf_counter()
    flows, rejects = store.read_batch(manifest)
    counts, quarantined_new = upsert_batch(con, backend, flows, rejects)
    return HotLoad(
        counts,
        quarantined_new,
        time.perf_counter() - t0,
        flows["uid"],
        rejects,
        TsRanges.of(flows["ts"]),
    )
