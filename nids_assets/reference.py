"""The labelled data a champion learns from: the reference corpus (captures of other
networks, one partition per capture) and analysts' labels on live flows."""

from datetime import UTC, datetime

import polars as pl
from dagster import (
    AssetExecutionContext,
    DataVersion,
    DynamicPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    asset,
)

from nids_core.escaping import escape_markdown
from nids_core.training_data.analyst_labels import matches, newest_per_uid, read_labels
from nids_core.training_data.reference_corpus import parse_reference, stored_path
from nids_core.training_data.training_set import read_cold_window, window_days
from nids_resources.mlflow import ModelSettingsResource
from nids_resources.reference import ReferenceCorpusResource
from nids_resources.stores import ColdStoreResource

LABELLED_DATA_GROUP = "labelled_data"
FLOW_LABELS_PATH = "training/flow_labels.parquet"

reference_partitions = DynamicPartitionsDefinition(name="reference_captures")


@asset(
    partitions_def=reference_partitions,
    group_name=LABELLED_DATA_GROUP,
    kinds={"parquet", "polars"},
)
def reference_flows(
    context: AssetExecutionContext,
    reference_corpus: ReferenceCorpusResource,
    cold_store: ColdStoreResource,
) -> MaterializeResult:
    """One labelled capture of another network (partition = capture file), read with the
    Zeek readers and stored under `reference/capture=<name>/<sha256>.parquet`, apart from
    live data: never in the hot table, the alerts or the live cold partitions. The data
    version is the SHA-256 of the file's content, so a changed file shows as a new version;
    unreadable rows are counted with their reasons."""
    capture = context.partition_key
    files = {f.capture: f for f in reference_corpus.files()}
    if capture not in files:
        raise LookupError(
            f"reference capture {capture} is no longer in {', '.join(reference_corpus.all_locations())}"
        )
    data = reference_corpus.read(files[capture])
    flows, summary = parse_reference(data, capture, reference_corpus.max_file_bytes)
    path = cold_store.store().write_frame(stored_path(capture, summary.sha256), flows)
    context.log.info(
        f"{capture}: {summary.flows} flows ({summary.attacks} attacks, "
        f"{summary.flows - summary.labelled} unlabelled), {summary.unreadable} unreadable rows, "
        f"{summary.repeated} rows repeated whole read once"
    )
    return MaterializeResult(
        data_version=DataVersion(summary.sha256),
        metadata={**summary.as_metadata(), "file": files[capture].url, "path": path},
    )


@asset(deps=["cold_flows"], group_name=LABELLED_DATA_GROUP, kinds={"parquet", "polars"})
def flow_labels(
    context: AssetExecutionContext,
    cold_store: ColdStoreResource,
    model_settings: ModelSettingsResource,
) -> MaterializeResult:
    """Analysts' labels (`nids label`) resolved on the cold flows of the training window:
    the newest label of each uid (a later label wins; every label ever given is kept under
    `labels/`). Written to `training/flow_labels.parquet`; the counts show in the UI."""
    store = cold_store.store()
    entries = read_labels(store)
    days = window_days(store, model_settings.training_days, datetime.now(UTC).date())
    flows = read_cold_window(store, days, ["uid", "ts", "orig_h", "resp_h"])
    hits = matches(entries, flows)
    resolved = newest_per_uid(hits)
    path = store.write_frame(FLOW_LABELS_PATH, resolved)
    counts = dict(resolved.group_by("label").len().iter_rows())
    named = hits["entry"].n_unique()
    context.log.info(f"{entries.height} label entries; {resolved.height} live flows labelled")
    return MaterializeResult(
        metadata={
            "label_entries": entries.height,
            "analysts": entries["labelled_by"].n_unique(),
            "labelled_flows": resolved.height,
            "malicious_flows": int(counts.get("malicious", 0)),
            "benign_flows": int(counts.get("benign", 0)),
            "entries_without_a_flow_in_window": entries.height - named,
            "window": f"{days[0]} .. {days[-1]}" if days else "no cold days",
            "path": path,
            "newest_labels": MetadataValue.md(_newest_md(entries)),
        }
    )


def _newest_md(entries: pl.DataFrame, n: int = 10) -> str:
    if entries.height == 0:
        return "no labels yet: `nids label malicious|benign ...`"
    lines = ["| at | verdict | flows | by | why |", "|---|---|---|---|---|"]
    for e in entries.tail(n).reverse().iter_rows(named=True):
        # Uids, names and reasons come from analysts and Kafka: shown as text, never as
        # Markdown (an image fetched from elsewhere, a javascript: link).
        what = (
            f"uid {escape_markdown(e['uid'], 80)}"
            if e["uid"]
            else f"host {escape_markdown(e['host'], 60)} "
            f"{e['start']:%Y-%m-%d %H:%M} .. {e['end']:%Y-%m-%d %H:%M}"
        )
        lines.append(
            f"| {e['labelled_at']:%Y-%m-%d %H:%M:%S} | {escape_markdown(e['verdict'], 20)} | "
            f"{what} | {escape_markdown(e['labelled_by'], 80)} | {escape_markdown(e['why'], 200)} |"
        )
    return "\n".join(lines)
