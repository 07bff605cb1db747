"""One hot-store writer process on a DuckLake: upserts a slice of a real capture's flows as
batches of one Kafka partition, starting at a given wall-clock time (so that several
writers start at once), and prints its counts as JSON."""

import json
import sys
import time

import polars as pl

from nids_core.ingest.landing import upsert_batch
from nids_core.stores.cold import QUARANTINE_SCHEMA
from nids_core.stores.hot_backend import DuckLakeStore
from nids_core.stores.lake import LakeLocation, S3Access
from nids_core.zeek.files import read_zeek_file


def batches(args: dict) -> list[pl.DataFrame]:
    flows = read_zeek_file(args["capture"]).flows.slice(args["first"], args["rows"])
    flows = flows.with_columns(
        pl.lit(args["topic"]).alias("topic"),
        pl.lit(args["partition"], pl.Int32).alias("partition"),
        (pl.int_range(pl.len()) + args["first"]).cast(pl.Int64).alias("offset"),
    )
    size = args["batch"]
    return [flows.slice(i, size) for i in range(0, flows.height, size)]


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    backend = DuckLakeStore(
        LakeLocation(
            catalog=args["catalog"],
            data_path=args["data_path"],
            s3=S3Access(args.get("s3_endpoint"), "testing", "testing", "us-east-1"),
        )
    )
    work = batches(args)
    rejects = pl.DataFrame(schema=QUARANTINE_SCHEMA)
    totals = {"received": 0, "inserted": 0, "already_present": 0, "replaced": 0, "batches": 0}
    with backend.connect() as con:
        time.sleep(max(0.0, args.get("start_at", 0) - time.time()))
        for batch in work:
            counts, _ = upsert_batch(con, backend, batch, rejects)
            totals["received"] += counts.received
            totals["inserted"] += counts.inserted
            totals["already_present"] += counts.already_present
            totals["replaced"] += counts.replaced
            totals["batches"] += 1
            print(json.dumps({"committed": totals["batches"]}), flush=True)
    print(json.dumps(totals), flush=True)
