"""Run this code location under the real Dagster daemon on a local, embedded-default home:
what `dagster dev` does without the UI. Used by the daemon tests and the inference bench,
so they measure the platform the way it runs for users (runs queued, launched in their own
processes, sensors ticking on their own intervals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from nids_cli.instance import embedded_signing_key, ensure_instance_yaml


def embedded_env(home: Path, bootstrap_servers: str, **overrides: str) -> dict[str, str]:
    """Environment for the code location and the daemon: every store under `home`."""
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home / "dagster"),
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "NIDS_KAFKA_BOOTSTRAP": bootstrap_servers,
        "NIDS_DUCKDB_PATH": str(home / "nids.duckdb"),
        "NIDS_COLD_URL": str(home / "cold"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
        "NIDS_MLFLOW_ARTIFACTS": str(home / "mlflow" / "artifacts"),
        "NIDS_MODEL_CACHE_DIR": str(home / "model-cache"),
        "NIDS_ALERT_OUTBOX_PATH": str(home / "alert-outbox.sqlite"),
        "NIDS_ALERTS_DIR": str(home / "alerts"),
        "NIDS_MODEL_SIGNING_KEY": embedded_signing_key(home),
    }
    env.update(overrides)
    return env


def start_daemon(env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`dagster-daemon run` for the code location, in its own process group. The instance's
    storage is created first: the daemon's threads and a second process creating the SQLite
    tables at once collide."""
    from dagster import DagsterInstance

    home = Path(env["DAGSTER_HOME"])
    ensure_instance_yaml(home)
    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        DagsterInstance.get().dispose()
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME")
        else:
            os.environ["DAGSTER_HOME"] = previous
    daemon = Path(sys.executable).parent / "dagster-daemon"
    return subprocess.Popen(
        [str(daemon), "run", "-m", "nids_jobs.definitions"],
        env=env,
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_daemon(process: subprocess.Popen, kill: bool = False, timeout_s: float = 30) -> None:
    """Stop the daemon with its code servers and runs (the whole process group)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout_s)
    except ProcessLookupError:
        pass


def wait_until_idle(dagster_home: str, timeout_s: float = 120.0, quiet_s: float = 10.0) -> bool:
    """Wait until no run has been queued or in progress for `quiet_s` seconds (sensors may
    still request one after the last batch); False on timeout."""
    import time

    from dagster import DagsterInstance

    from nids_sensors.run_state import in_flight_run

    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    with DagsterInstance.from_config(dagster_home) as instance:
        while time.monotonic() < deadline:
            if in_flight_run(instance):
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= quiet_s:
                return True
            time.sleep(1)
    return False


def prediction_latency(sent: list[tuple[list[str], float]], hot_store: Path):
    """Per flow sent: uid, sent_at and predicted_at (epoch seconds; null when it has no
    prediction), from `(uids, send time)` chunks and the hot store's predictions."""
    import polars as pl

    from nids_core.stores.hot import read_only_query

    sent_at = pl.DataFrame(
        {
            "uid": [u for uids, _ in sent for u in uids],
            "sent_at": [t for uids, t in sent for _ in uids],
        }
    )
    predicted = pl.DataFrame(
        read_only_query(hot_store, "SELECT uid, epoch_us(predicted_at) / 1e6 FROM predictions"),
        schema=["uid", "predicted_at"],
        orient="row",
    )
    return sent_at.join(predicted, on="uid", how="left")
