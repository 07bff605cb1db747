"""`nids ingest [--until-idle]`: the daemon's ingest loop, in one process, until caught up.

The Kafka sensor is ticked and its runs executed here, exactly as the daemon would launch
them (same sensor, same job, same instance); a failed batch is retried after the sensor's
backoff; runs left "started" by a process that died are failed first (the sensor does
that), so their batch is taken up again. Done when the consumer group's lag is zero on
every partition.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nids_cli.instance import ensure_instance_yaml

DEFAULT_DAGSTER_HOME = Path("var/dagster")


@dataclass(frozen=True)
class IngestOutcome:
    ok: bool
    summary: str


def _total_lag(defs) -> tuple[int, dict[int, int]]:
    from nids_core.kafka.lag import measure_lag

    kafka = defs.resources["kafka"]
    with kafka.open_client() as client:
        lags = measure_lag(client, kafka.topic)
    return sum(x.lag for x in lags), {x.partition: x.lag for x in lags}


def ingest_until_idle(
    until_idle: bool = True,
    timeout_s: float | None = None,
    cold: bool = True,
    score: bool = False,
    echo: Callable[[str], None] = print,
    poll_s: float = 2.0,
) -> IngestOutcome:
    from dagster import DagsterInstance

    from nids_cli.driver import drain
    from nids_core.kafka.log import KafkaUnavailable, TopicNotFound
    from nids_jobs.definitions import build_definitions

    if not os.environ.get("DAGSTER_HOME"):
        os.environ["DAGSTER_HOME"] = str(DEFAULT_DAGSTER_HOME.resolve())
    ensure_instance_yaml(Path(os.environ["DAGSTER_HOME"]))
    defs = build_definitions()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    cursors: dict = {}
    runs = failed = 0
    with DagsterInstance.get() as instance:
        while True:
            stats = drain(defs, instance, cursors, cold=cold, serve=score)
            runs += stats.ingest_runs
            failed += stats.failed_runs
            for why in stats.skips:
                if why:
                    echo(f"sensor: {why}")
            try:
                lag, per_partition = _total_lag(defs)
            except (KafkaUnavailable, TopicNotFound) as exc:
                lag, per_partition = -1, {}
                echo(f"lag not measured: {exc}")
            if lag == 0:
                return IngestOutcome(
                    failed == 0 or until_idle,
                    f"caught up: lag 0 on every partition ({runs} ingest runs, {failed} failed)",
                )
            if not until_idle:
                return IngestOutcome(
                    failed == 0, f"one pass: {runs} ingest runs, {failed} failed; lag {lag}"
                )
            if deadline is not None and time.monotonic() > deadline:
                return IngestOutcome(
                    False,
                    f"timed out after {timeout_s:.0f} s with lag {per_partition or lag} "
                    f"({runs} ingest runs, {failed} failed)",
                )
            time.sleep(poll_s)
