"""Execute one ingest run request in its own process, as the daemon's run launcher would."""

import json
import sys
from pathlib import Path

from dagster import DagsterInstance, RunRequest

from nids_cli.driver import execute_request
from nids_devkit.broker import LocalBroker
from nids_jobs.definitions import build_definitions
from nids_resources.stores import HotStoreResource
from tests.support.deployment import make_resources

if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    broker = LocalBroker(args["port"], None)  # only its address is used
    hot = HotStoreResource(**args["hot_store"]) if args.get("hot_store") else None
    defs = build_definitions(
        make_resources(broker, args["topic"], Path(args["tmp"]), hot_store=hot)
    )
    instance = DagsterInstance.from_config(args["dagster_home"])
    request = RunRequest(run_key=args["run_key"], run_config=args["run_config"])
    sys.exit(0 if execute_request(defs, instance, "ingest_job", request, "WARNING") else 1)
