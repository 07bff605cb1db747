"""Storage resources: the hot DuckDB file and the landing/cold Parquet store."""

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource
from pydantic import Field

from nids_core.stores.cold import ColdStore
from nids_core.stores.hot import ensure_schema
from nids_resources.run_worker import TagsRunWorker


class HotStoreResource(TagsRunWorker, DuckDBResource):
    """The hot DuckDB file (`flows`, `predictions`, `quarantine`).

    DuckDB allows one writing process per file: every asset that writes here runs in the
    `duckdb` concurrency pool (size 1), and connecting waits with backoff on a held lock.
    """

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the hot tables created; always closed, also on error."""
        from pathlib import Path

        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as con:
            try:
                ensure_schema(con)
                yield con
            finally:
                con.close()


class ColdStoreResource(TagsRunWorker, ConfigurableResource):
    """Landing zone and daily cold partitions: a local path or `s3://bucket/prefix`."""

    url: str = Field(description="Root URL of the landing zone and cold store.")
    s3_endpoint_url: str | None = Field(default=None, description="S3 endpoint (MinIO, moto).")
    aws_access_key_id: str | None = Field(default=None, description="From the environment only.")
    aws_secret_access_key: str | None = Field(
        default=None, description="From the environment only."
    )
    aws_region: str | None = Field(default=None)

    def storage_options(self) -> dict:
        if not self.url.startswith("s3://"):
            return {}
        opts: dict = {"skip_instance_cache": True}
        client_kwargs: dict = {}
        if self.s3_endpoint_url:
            opts["endpoint_url"] = self.s3_endpoint_url
        if self.aws_region:
            client_kwargs["region_name"] = self.aws_region
        if self.aws_access_key_id:
            opts["key"] = self.aws_access_key_id
        if self.aws_secret_access_key:
            opts["secret"] = self.aws_secret_access_key
        # Fail fast on an unreachable endpoint instead of retrying for minutes.
        opts["config_kwargs"] = {
            "connect_timeout": 5,
            "read_timeout": 30,
            "retries": {"max_attempts": 2},
        }
        if client_kwargs:
            opts["client_kwargs"] = client_kwargs
        return opts

    def store(self) -> ColdStore:
        return ColdStore(self.url, self.storage_options())
