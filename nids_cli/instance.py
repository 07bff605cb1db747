"""The embedded default's Dagster instance (SQLite under $DAGSTER_HOME), as `dagster dev`
and `dagster-daemon run` use it.

- Runs are queued and dequeued every second; one ingest run per topic partition runs at a
  time (the next range waits in the queue behind it). The `duckdb` pool (one writer per DuckDB
  file) is enforced per run: a run that writes the hot store waits in the queue, visible in
  the UI, instead of claiming the slot step by step (an op-level wait busy-loops a core in
  this Dagster version).
- Run monitoring fails runs that do not start, hang past their job's `dagster/max_runtime`,
  or do not finish cancelling; `dead_run_sensor` fails runs whose process died (the default
  run launcher has no health check of its own).
"""

from pathlib import Path

EMBEDDED_DAGSTER_YAML = """\
# Dagster instance of the embedded default (written by `nids demo` and `nids ingest`).
telemetry:
  enabled: false
run_queue:
  dequeue_interval_seconds: 1
concurrency:
  runs:
    tag_concurrency_limits:
      # One ingest run per topic partition at a time: the Kafka sensor queues a partition's
      # next offset range behind its run in flight, and this starts it when that one ends.
      - key: nids/ingest_lane
        value:
          applyLimitPerUniqueValue: true
        limit: 1
  pools:
    # DuckDB allows one writing process per file: hot_flows, cold_predictions and
    # expire_hot_flows share pool "duckdb"; the scoring run waits on DuckDB's file lock.
    default_limit: 1
    granularity: run
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_resume_run_attempts: 0
  poll_interval_seconds: 10
"""


def ensure_instance_yaml(dagster_home: Path) -> Path:
    """Write the embedded default's dagster.yaml into `dagster_home` unless one is there."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    if not path.exists():
        path.write_text(EMBEDDED_DAGSTER_YAML)
    return path


def embedded_signing_key(home: Path) -> str:
    """NIDS_MODEL_SIGNING_KEY for the embedded default (demo, local daemon): the
    environment's if set, else a random key kept in `home/model-signing.key` (mode 0600),
    so the models a home trained stay servable. A deployment sets its own key."""
    import os
    import secrets

    if os.environ.get("NIDS_MODEL_SIGNING_KEY"):
        return os.environ["NIDS_MODEL_SIGNING_KEY"]
    path = home / "model-signing.key"
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()
