"""Asset checks on ingestion: accounting, schema and value ranges, visible in the UI.

They are declared as `check_specs` of the ingest assets and evaluated inside the same step,
on the batch the step just wrote and the connection it already holds: a check can never
look at another run's batch (two partitions ingest at once), and a micro-batch pays for
no extra steps, connections or re-reads. The accounting and schema checks are blocking:
if a batch does not add up, the rest of the run is skipped, its offsets are not committed
and the batch is retried rather than silently moved past.
"""

import duckdb
import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from nids_core.ingest.landing import HotLoad
from nids_core.schema import hot_flow_columns, value_rules_sql
from nids_core.stores.cold import BatchManifest, ColdStore
from nids_core.zeek.plausibility import PlausibleTime

FLOW_BATCH_ACCOUNTING = "flow_batch_accounting"
HOT_FLOWS_ACCOUNTING = "hot_flows_accounting"
HOT_FLOWS_SCHEMA = "hot_flows_schema"
HOT_FLOWS_VALUE_RANGES = "hot_flows_value_ranges"
SCORING_KEEPS_UP = "scoring_keeps_up"

FLOW_BATCH_CHECKS = [
    AssetCheckSpec(
        FLOW_BATCH_ACCOUNTING,
        asset="flow_batch",
        blocking=True,
        description=(
            "Every record read from the range is either a landed flow or a quarantined "
            "reject, no offset is landed twice, and the landing files, read back, hold "
            "exactly the rows the manifest lists."
        ),
    )
]
HOT_FLOWS_CHECKS = [
    AssetCheckSpec(
        HOT_FLOWS_ACCOUNTING,
        asset="hot_flows",
        blocking=True,
        description=(
            "records read = rows stored + quarantined + duplicates, and, counted again in "
            "DuckDB after the commit: every uid of the batch is in `flows` and every reject "
            "of the range is in `quarantine`."
        ),
    ),
    AssetCheckSpec(
        HOT_FLOWS_SCHEMA,
        asset="hot_flows",
        blocking=True,
        description="The `flows` table has exactly the contract's columns and types.",
    ),
    AssetCheckSpec(
        HOT_FLOWS_VALUE_RANGES,
        asset="hot_flows",
        blocking=False,
        description=(
            "Rows of the batch have required fields, ports in 0-65535, non-negative and "
            "finite volumes, a known label, and a timestamp inside the plausible window."
        ),
    ),
    AssetCheckSpec(
        SCORING_KEEPS_UP,
        asset="hot_flows",
        blocking=False,
        description=(
            "Scoring keeps up with ingest: fails when a batch landed more than "
            "NIDS_HEALTH_STALL_MINUTES ago and no scoring pass has been reported since. "
            "Also evaluated every minute by kafka_lag_sensor, so it fails while nothing lands."
        ),
    ),
]


def flow_batch_accounting(store: ColdStore, manifest: BatchManifest) -> AssetCheckResult:
    """Recount the landed batch from its files (provenance columns only)."""
    flows, rejects = store.read_batch(manifest, columns=["topic", "partition", "offset"])
    span = manifest.offsets.size
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
    outside = offsets.filter(
        (offsets < manifest.offsets.start) | (offsets >= manifest.offsets.end)
    ).len()
    if outside:
        problems.append(
            f"{outside} offsets outside [{manifest.offsets.start}, {manifest.offsets.end})"
        )
    return AssetCheckResult(
        check_name=FLOW_BATCH_ACCOUNTING,
        passed=not problems,
        metadata={
            "records_read": manifest.records,
            "flows_landed": flows.height,
            "quarantined": rejects.height,
            "problems": "; ".join(problems) or "none",
        },
    )


def hot_flows_accounting(
    con: duckdb.DuckDBPyConnection,
    manifest: BatchManifest,
    load: HotLoad,
    stored: int,
    duplicates: int,
) -> AssetCheckResult:
    """Balance the batch and recount it in the committed tables (its uids among the rows
    of its ts ranges). Rejects are matched by offset *and* bytes: after offset reuse the
    range may also hold an earlier record's."""
    uids = load.uids.unique().to_frame("uid")
    in_ranges, params = load.ts_ranges.sql("f.ts")
    con.register("_uids", uids.to_arrow())
    con.register("_rejects", load.rejects.select("offset", "raw").to_arrow())
    try:
        present = con.execute(
            f"SELECT count(*) FROM flows f WHERE {in_ranges} AND f.uid IN (SELECT uid FROM _uids)",
            params,
        ).fetchone()[0]
        quarantined = con.execute(
            "SELECT count(*) FROM _rejects r WHERE EXISTS (SELECT 1 FROM quarantine q "
            'WHERE q.topic = ? AND q."partition" = ? AND q."offset" = r."offset" '
            "AND q.raw IS NOT DISTINCT FROM r.raw)",
            [manifest.offsets.topic, manifest.offsets.partition],
        ).fetchone()[0]
    finally:
        con.unregister("_uids")
        con.unregister("_rejects")
    read, q = manifest.records, manifest.quarantined
    balanced = read == stored + q + duplicates
    return AssetCheckResult(
        check_name=HOT_FLOWS_ACCOUNTING,
        passed=balanced and present == uids.height and quarantined == q,
        metadata={
            "records_read": read,
            "rows_stored": stored,
            "quarantined": q,
            "duplicates": duplicates,
            "balanced": balanced,
            "batch_uids_in_flows": f"{present}/{uids.height}",
            "quarantine_rows_in_range": f"{quarantined}/{q}",
        },
    )


def hot_flows_schema(con: duckdb.DuckDBPyConnection) -> AssetCheckResult:
    actual = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = 'flows' ORDER BY ordinal_position"
    ).fetchall()
    diff = sorted(set(hot_flow_columns()) ^ set(actual))
    return AssetCheckResult(
        check_name=HOT_FLOWS_SCHEMA,
        passed=not diff,
        metadata={"columns": len(actual), "differences": str(diff or "none")},
    )


RANGE_RULES = value_rules_sql()


def hot_flows_value_ranges(
    con: duckdb.DuckDBPyConnection,
    manifest: BatchManifest,
    batch_uids: pl.Series,
    plausible: PlausibleTime,
) -> AssetCheckResult:
    """Count rule violations among the stored rows of the batch, in one scan: rows whose
    provenance lies in the batch's range (which prunes the scan) and whose uid is the
    batch's (after offset reuse the range may also hold an earlier record). Ingest
    quarantines all of these, so any count is an error."""
    earliest, latest = plausible.bounds()
    sums = ", ".join(f"count(*) FILTER (WHERE {rule})" for rule in RANGE_RULES.values())
    in_range, params = manifest.offsets.sql_filter()
    con.register("_uids", batch_uids.unique().to_frame("uid").to_arrow())
    try:
        row = con.execute(
            f"SELECT {sums} FROM flows WHERE {in_range} AND uid IN (SELECT uid FROM _uids)",
            {"earliest": earliest, "latest": latest, **params},
        ).fetchone()
    finally:
        con.unregister("_uids")
    counts = {name: int(n) for name, n in zip(RANGE_RULES, row, strict=True)}
    errors = {k: v for k, v in counts.items() if v}
    return AssetCheckResult(
        check_name=HOT_FLOWS_VALUE_RANGES,
        passed=not any(counts.values()),
        severity=AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN,
        metadata=counts,
    )
