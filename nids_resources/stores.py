"""Storage resources: the hot store (a DuckDB file or a DuckLake) and the landing/cold
Parquet store."""

import re
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster import ConfigurableResource
from dagster_duckdb import DuckDBResource
from pydantic import field_validator, model_validator

from nids_core.stores.cold import ColdStore
from nids_core.stores.hot_backend import DuckDBFile, DuckLakeStore, HotBackend
from nids_core.stores.hot_schema import ensure_schema
from nids_core.stores.lake import LakeLocation, S3Access
from nids_resources.run_worker import TagsRunWorker
from nids_resources.settings import setting

HOT_STORE_KINDS = ("duckdb", "ducklake")


class S3AccessSettings(ConfigurableResource):
    """The S3 endpoint and credentials: the cold store's, and the DuckLake hot store's."""

    s3_endpoint_url: str | None = setting(
        None,
        env="NIDS_S3_ENDPOINT_URL",
        description="S3 endpoint for MinIO or another S3-compatible store",
    )
    aws_access_key_id: str | None = setting(
        None, env="AWS_ACCESS_KEY_ID", description="S3 access key", secret=True
    )
    aws_secret_access_key: str | None = setting(
        None, env="AWS_SECRET_ACCESS_KEY", description="S3 secret key", secret=True
    )
    aws_region: str | None = setting(None, env="AWS_REGION", description="S3 region")

    def s3_access(self) -> S3Access:
        return S3Access(
            endpoint_url=self.s3_endpoint_url,
            key_id=self.aws_access_key_id,
            secret=self.aws_secret_access_key,
            region=self.aws_region,
        )


class HotStoreResource(TagsRunWorker, S3AccessSettings, DuckDBResource):
    """The hot tables of nids_core.stores.hot_schema (`flows`, `predictions`,
    `scoring_progress`, `quarantine`, `alerts`, `alerts_progress`, `evidence`,
    `analyst_alerts`, `detection_progress`), created on first connect, in one of two
    backends (NIDS_HOT_STORE):

    - `duckdb` (the embedded default): one DuckDB file. DuckDB allows one writing process
      per file: every asset that writes here runs in the `duckdb` concurrency pool (size 1),
      and connecting waits with backoff on a held lock.
    - `ducklake` (the production profile): a DuckLake with its catalog in PostgreSQL and
      its data on S3 (the cold store's credentials). Ingest runs of many partitions write
      at once on any node, and readers never wait on a writer.
    """

    store_kind: str = setting(
        "duckdb",
        env="NIDS_HOT_STORE",
        description="Hot-store backend: duckdb (one file, one writer) or ducklake "
        "(catalog in PostgreSQL, data on S3; many writers)",
    )
    database: str = setting(
        "var/nids.duckdb", env="NIDS_DUCKDB_PATH", description="Hot DuckDB file (duckdb backend)"
    )
    ducklake_catalog: str | None = setting(
        None,
        env="NIDS_DUCKLAKE_CATALOG",
        description="PostgreSQL connection string of the DuckLake catalog, e.g. "
        "'host=pg dbname=nids_hot user=nids' (the password from PGPASSWORD; ducklake backend)",
    )
    ducklake_data_path: str | None = setting(
        None,
        env="NIDS_DUCKLAKE_DATA_PATH",
        description="Where the DuckLake's Parquet files live: s3://bucket/prefix or a folder "
        "(ducklake backend)",
    )
    ducklake_inline_rows: int = setting(
        1000,
        env="NIDS_DUCKLAKE_INLINE_ROWS",
        description="Writes of fewer rows are kept in the DuckLake catalog until the lifecycle "
        "job flushes them into files (0: never)",
        ge=0,
    )

    @field_validator("store_kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if value not in HOT_STORE_KINDS:
            raise ValueError(f"is not one of: {', '.join(HOT_STORE_KINDS)}")
        return value

    @model_validator(mode="after")
    def _lake_is_located(self) -> "HotStoreResource":
        if self.store_kind == "ducklake":
            missing = [
                var
                for var, value in (
                    ("NIDS_DUCKLAKE_CATALOG", self.ducklake_catalog),
                    ("NIDS_DUCKLAKE_DATA_PATH", self.ducklake_data_path),
                )
                if not value
            ]
            if missing:
                raise ValueError(f"NIDS_HOT_STORE=ducklake needs {' and '.join(missing)}")
            if "password=" in (self.ducklake_catalog or "").replace(" ", "").lower():
                raise ValueError(
                    "NIDS_DUCKLAKE_CATALOG holds a password: set PGPASSWORD instead, so the "
                    "secret stays out of the configuration"
                )
        return self

    def backend(self) -> HotBackend:
        """Where the hot tables live, for code that needs no Dagster."""
        if self.store_kind == "ducklake":
            return DuckLakeStore(
                LakeLocation(
                    catalog=str(self.ducklake_catalog),
                    data_path=str(self.ducklake_data_path),
                    s3=self.s3_access(),
                    inline_rows=self.ducklake_inline_rows,
                )
            )
        return DuckDBFile(self.database)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection with the hot tables created; always closed, also on error."""
        if self.store_kind == "ducklake":
            with self.backend().connect() as con:
                yield con
            return
        from pathlib import Path

        if self.database != ":memory:":
            Path(self.database).parent.mkdir(parents=True, exist_ok=True)
        with self.get_connection() as con:
            try:
                ensure_schema(con)
                yield con
            finally:
                con.close()


class ColdStoreResource(TagsRunWorker, S3AccessSettings):
    """Landing zone and daily cold partitions: a local path or `s3://bucket/prefix`."""

    url: str = setting(
        "var/cold",
        env="NIDS_COLD_URL",
        description="Landing zone and cold store root: a path or s3://bucket/prefix",
    )
    compaction_memory: str = setting(
        "2GB",
        env="NIDS_COLD_COMPACTION_MEMORY",
        description="Memory a cold day's compaction may use before it spills to disk "
        "(DuckDB's memory_limit, e.g. 2GB)",
    )

    @field_validator("url")
    @classmethod
    def _location(cls, value: str) -> str:
        if "://" in value and not value.startswith(("s3://", "file://")):
            raise ValueError("use a local path or s3://bucket/prefix")
        if value.startswith("s3://") and len(value) <= len("s3://"):
            raise ValueError("names no bucket")
        return value

    @field_validator("compaction_memory")
    @classmethod
    def _memory(cls, value: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value.strip()):
            raise ValueError("is not an amount of memory such as 512MB or 2GB")
        return value.strip()

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
        return ColdStore(self.url, self.storage_options(), self.compaction_memory)
