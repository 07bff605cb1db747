"""Start an MLflow tracking server (SQLite store, local artifact root) on loopback.

Used by the test suite and the demo's `--ui`; production runs MLflow on PostgreSQL + S3.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nids_devkit.broker import free_port


@dataclass
class LocalMlflow:
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait(10)

    def __enter__(self) -> LocalMlflow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_mlflow(
    root: str | Path,
    port: int | None = None,
    log_path: str | Path | None = None,
    timeout_s: float = 90,
    backend_store_uri: str | None = None,
) -> LocalMlflow:
    """`mlflow server` with `root/mlflow.db` (or `backend_store_uri`, e.g. PostgreSQL) and
    artifacts proxied to `root/artifacts`."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            backend_store_uri or f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    server = LocalMlflow(port, proc)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode} (log: {log_path})")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.stop()
    raise TimeoutError(f"mlflow server did not answer on {server.url} in {timeout_s:.0f} s")
