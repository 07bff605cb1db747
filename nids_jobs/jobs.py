"""Jobs, each an asset selection run in one process: `ingest_job` (one Kafka offset range,
landed, upserted, committed), `cold_flows_job` (cold days appended or compacted),
`training_job` (labels, training set, GNN with its gate, promotion), `scoring_job`
(predictions, then alerts), `alerts_job` (the alerts step alone, on an attack-rate onset)
and `reference_job` (the reference corpus's captures read in). The lifecycle job lives in
nids_jobs.lifecycle."""

from dagster import AssetSelection, define_asset_job, in_process_executor

from nids_assets.ingestion import consumer_offsets, flow_batch, hot_flows
from nids_assets.model import champion_model, gnn_model, training_set
from nids_assets.reference import flow_labels, reference_flows
from nids_assets.scoring import alerts, flow_predictions

# In-process: a micro-batch is a few seconds of work, so a process per step would cost
# more than the work itself. The DuckDB pool still applies to each step.
ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.assets(flow_batch, hot_flows, consumer_offsets),
    executor_def=in_process_executor,
    description="Land one Kafka offset range, upsert it into DuckDB, then commit its offsets.",
    # Run monitoring fails a run that hangs past this (the daemon's run_monitoring).
    tags={"nids/kind": "ingest", "dagster/max_runtime": "600"},
)

cold_flows_job = define_asset_job(
    "cold_flows_job",
    selection=AssetSelection.assets("cold_flows"),
    executor_def=in_process_executor,
    description="Append new landed batches to their cold days, or compact (rebuild) days "
    "from the landing zone.",
    tags={"dagster/max_runtime": "3600"},
)

# Training, gate and promotion in one run, so a failed blocking gate check really stops
# champion_model. In-process: torch and the training set are loaded once.
training_job = define_asset_job(
    "training_job",
    selection=AssetSelection.assets(flow_labels, training_set, gnn_model, champion_model),
    executor_def=in_process_executor,
    description="Resolve analysts' labels, build the training set from the reference corpus "
    "and the labelled live flows, train and gate the GNN, promote it if it passed.",
    tags={"nids/kind": "training", "dagster/max_runtime": "21600"},
)

# What the scoring sensor requests while ingest goes on: score, then refresh alerts.
scoring_job = define_asset_job(
    "scoring_job",
    selection=AssetSelection.assets(flow_predictions, alerts),
    executor_def=in_process_executor,
    description="Score unscored hot flows with the champion and refresh the alerts table.",
    tags={"nids/kind": "scoring", "dagster/max_runtime": "1800"},
)

# What attack_rate_sensor requests when a following scoring run sees the newest window's
# attack rate start failing: the alerts step alone, so the check (and the webhook) fires
# now rather than when the scoring run ends.
alerts_job = define_asset_job(
    "alerts_job",
    selection=AssetSelection.assets(alerts),
    executor_def=in_process_executor,
    description="Refresh the alerts table and evaluate its attack-rate check.",
    tags={"nids/kind": "alerts", "dagster/max_runtime": "600"},
)

# One capture of the reference corpus per run (a partition), requested by the
# reference_corpus_sensor when a file is added or changed.
reference_job = define_asset_job(
    "reference_job",
    selection=AssetSelection.assets(reference_flows),
    executor_def=in_process_executor,
    description="Read one capture file of the reference corpus into the cold store.",
    tags={"nids/kind": "reference", "dagster/max_runtime": "3600"},
)
