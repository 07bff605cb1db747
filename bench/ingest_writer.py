"""One ingest node of `bench/ingest.py --writers N`: the ingest job (read, land on S3,
upsert into the hot store, commit the offset) for every range of its Kafka partitions, one
run after another, on the production profile's Dagster instance (PostgreSQL). Everything
is set up first; the runs start at the given wall-clock time, so that N nodes start at once.
Prints one JSON line: when it started and ended, and how many runs it made and failed."""

import json
import os
import sys
import time
import traceback

from dagster import DagsterInstance, RunRequest

from nids_assets.ingestion import batch_run_config
from nids_cli.driver import execute_request
from nids_core.kafka.log import KafkaSettings, open_client
from nids_core.kafka.offsets import OffsetRange
from nids_jobs.definitions import build_definitions
from nids_resources.from_env import resources_from_env


def ranges(args: dict) -> list[OffsetRange]:
    settings = KafkaSettings(os.environ["NIDS_KAFKA_BOOTSTRAP"], "bench-plan")
    with open_client("kafka-python", settings) as client:
        marks = client.watermarks(args["topic"], args["partitions"])
    step = args["max_batch_records"]
    # In offset order across the partitions, as a sensor requests them while they arrive.
    work = [
        OffsetRange(args["topic"], p, start, min(start + step, marks[p].high))
        for p in args["partitions"]
        for start in range(marks[p].low, marks[p].high, step)
    ]
    return sorted(work, key=lambda r: (r.start, r.partition))


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    defs = build_definitions(resources_from_env())
    work = ranges(args)
    with DagsterInstance.get() as instance:
        # Connect once before the start, as a long-lived node would have.
        with defs.resources["hot_store"].connect() as con:
            con.execute("SELECT count(*) FROM flows").fetchone()
        time.sleep(max(0.0, args["start_at"] - time.time()))
        started = time.time()
        failed = 0
        for r in work:
            request = RunRequest(run_key=r.run_key(), run_config=batch_run_config(r))
            try:
                ok = execute_request(defs, instance, "ingest_job", request, "WARNING")
            except Exception:  # a run that fails outside its steps: say why on stderr
                traceback.print_exc()
                ok = False
            failed += 0 if ok else 1
        print(
            json.dumps(
                {"started": started, "ended": time.time(), "runs": len(work), "failed": failed}
            )
        )
