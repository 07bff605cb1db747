"""Asset checks on ingestion: accounting, schema and value ranges, visible in the UI.

The accounting checks are blocking: if a batch does not add up, its offsets are not
committed and the batch is retried rather than silently moved past.
"""

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetKey,
    asset_check,
)

from nids_assets.ingestion import DUCKDB_POOL, flow_batch, hot_flows
from nids_core.cold_store import ColdStore
from nids_core.hot_store import FLOWS_DDL, count_range, dedupe_batch
from nids_resources.stores import ColdStoreResource, HotStoreResource


def _latest_metadata(context: AssetCheckExecutionContext, key: str) -> dict:
    event = context.instance.get_latest_materialization_event(AssetKey(key))
    if event is None or event.asset_materialization is None:
        raise RuntimeError(f"{key} has never been materialized")
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _manifest(store: ColdStore, md: dict):
    return store.read_manifest(
        md["topic"], int(md["partition"]), int(md["offset_start"]), int(md["offset_end"])
    )


@asset_check(asset=flow_batch, blocking=True)
def flow_batch_accounting(
    context: AssetCheckExecutionContext, cold_store: ColdStoreResource
) -> AssetCheckResult:
    """Every record read from the range is either a landed flow or a quarantined reject, and
    the landing files hold exactly the flows the manifest lists."""
    md = _latest_metadata(context, "flow_batch")
    store = cold_store.store()
    manifest = _manifest(store, md)
    flows, rejects = store.read_batch(manifest)
    span = manifest.end - manifest.start
    problems = []
    if manifest.records != manifest.flows + manifest.quarantined:
        problems.append("records read != flows + quarantined")
    if flows.height != manifest.flows or rejects.height != manifest.quarantined:
        problems.append("landing files disagree with the manifest")
    if manifest.records > span:
        problems.append(f"read {manifest.records} records from a range of {span} offsets")
    offsets = pl.concat([flows["offset"], rejects["offset"]])
    if offsets.n_unique() != offsets.len():
        problems.append("an offset was landed twice")
    return AssetCheckResult(
        passed=not problems,
        metadata={
            "records_read": manifest.records,
            "flows_landed": flows.height,
            "quarantined": rejects.height,
            "problems": "; ".join(problems) or "none",
        },
    )


@asset_check(asset=hot_flows, blocking=True, pool=DUCKDB_POOL)
def hot_flows_accounting(
    context: AssetCheckExecutionContext,
    hot_store: HotStoreResource,
    cold_store: ColdStoreResource,
) -> AssetCheckResult:
    """records read = rows stored + quarantined + duplicates, and, counted again in DuckDB:
    every uid of the batch is in `flows` and every reject of the range is in `quarantine`."""
    md = _latest_metadata(context, "hot_flows")
    store = cold_store.store()
    manifest = _manifest(store, md)
    flows, _ = store.read_batch(manifest)
    uids = dedupe_batch(flows).select("uid")
    with hot_store.connect() as con:
        con.register("_uids", uids.to_arrow())
        present = con.execute("SELECT count(*) FROM _uids JOIN flows USING (uid)").fetchone()[0]
        con.unregister("_uids")
        quarantined = count_range(
            con, "quarantine", manifest.topic, manifest.partition, manifest.start, manifest.end
        )
    read, stored, dup = int(md["records_read"]), int(md["rows_stored"]), int(md["duplicates"])
    q = int(md["quarantined"])
    balanced = read == stored + q + dup
    return AssetCheckResult(
        passed=balanced and present == uids.height and quarantined == manifest.quarantined,
        metadata={
            "records_read": read,
            "rows_stored": stored,
            "quarantined": q,
            "duplicates": dup,
            "balanced": balanced,
            "batch_uids_in_flows": f"{present}/{uids.height}",
            "quarantine_rows_in_range": f"{quarantined}/{manifest.quarantined}",
        },
    )


def _expected_columns() -> list[tuple[str, str]]:
    cols = []
    for line in FLOWS_DDL.strip().splitlines()[1:-1]:
        name, typ = line.strip().rstrip(",").split()[:2]
        cols.append((name.strip('"'), typ))
    return cols


@asset_check(asset=hot_flows, blocking=True, pool=DUCKDB_POOL)
def hot_flows_schema(
    context: AssetCheckExecutionContext, hot_store: HotStoreResource
) -> AssetCheckResult:
    """The `flows` table has exactly the contract's columns and types."""
    with hot_store.connect() as con:
        actual = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'flows' ORDER BY ordinal_position"
        ).fetchall()
    expected = [
        (n, {"TIMESTAMPTZ": "TIMESTAMP WITH TIME ZONE"}.get(t, t)) for n, t in _expected_columns()
    ]
    diff = sorted(set(expected) ^ set(actual))
    return AssetCheckResult(
        passed=not diff, metadata={"columns": len(actual), "differences": str(diff or "none")}
    )


_RANGE_RULES = {
    "missing_required": "ts IS NULL OR uid IS NULL OR orig_h IS NULL OR resp_h IS NULL",
    "port_out_of_range": "orig_p NOT BETWEEN 0 AND 65535 OR resp_p NOT BETWEEN 0 AND 65535",
    "negative_volume": (
        "duration < 0 OR orig_bytes < 0 OR resp_bytes < 0 OR orig_pkts < 0 OR resp_pkts < 0 "
        "OR orig_ip_bytes < 0 OR resp_ip_bytes < 0 OR missed_bytes < 0"
    ),
    "unknown_label": "label IS NOT NULL AND label NOT IN ('benign', 'malicious')",
    "ts_in_future": "ts > now() + INTERVAL 1 DAY",
}


@asset_check(asset=hot_flows, blocking=False, pool=DUCKDB_POOL)
def hot_flows_value_ranges(
    context: AssetCheckExecutionContext, hot_store: HotStoreResource
) -> AssetCheckResult:
    """Rows of the latest batch have required fields, ports in 0-65535, non-negative
    volumes, a known label, and no timestamp more than a day in the future (a warning)."""
    md = _latest_metadata(context, "hot_flows")
    where = 'topic = ? AND "partition" = ? AND "offset" >= ? AND "offset" < ?'
    params = [md["topic"], int(md["partition"]), int(md["offset_start"]), int(md["offset_end"])]
    counts = {}
    with hot_store.connect() as con:
        for name, rule in _RANGE_RULES.items():
            counts[name] = con.execute(
                f"SELECT count(*) FROM flows WHERE {where} AND ({rule})", params
            ).fetchone()[0]
    errors = {k: v for k, v in counts.items() if v and k != "ts_in_future"}
    severity = AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN
    return AssetCheckResult(passed=not any(counts.values()), severity=severity, metadata=counts)


INGESTION_CHECKS = [
    flow_batch_accounting,
    hot_flows_accounting,
    hot_flows_schema,
    hot_flows_value_ranges,
]
