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

from nids_jobs.instance import ensure_instance_yaml


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
