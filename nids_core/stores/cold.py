"""Landing zone and cold store: Parquet on a local path or S3, through fsspec.

Layout under the store's root URL (<batch> = <topic>-p<partition>-<start>-<end>-<digest>):

    landing/date=YYYY-MM-DD/<batch>.parquet              flows of one batch
    landing/_quarantine/<batch>.parquet                  its rejects
    landing/_batches/<batch>.json                        its manifest
    landing/_ranges/<topic>-p<partition>-<start>-<end>.json
                                                         the manifest last landed for a range
    flows/date=YYYY-MM-DD/part-0.parquet                 one cold day, compacted
    flows/date=YYYY-MM-DD/batch-<batch>.parquet          a batch appended to it since

A cold day grows by appending landed batches as files (a cost per batch that does not
depend on the day's size) and is compacted into `part-0.parquet` once it is closed, or when
it is backfilled: rebuilt whole from the landing zone, deduplicated and sorted. Reading a
day through `read_cold_day` applies the compaction's rules to whatever files it holds, so
a reader sees the same rows before and after compaction.

A batch is named by its offset range *and* a digest of the records read, because offsets
are not an identity: a restarted broker, a recreated topic or a reset consumer group hands
out the same offsets again for other records. Landing the same records again rewrites the
same files (idempotent); other records under reused offsets land beside the earlier ones,
never over them. Each write is atomic (temporary file and rename locally, a single object
PUT on S3). The manifest is written last and marks a batch as durably landed.
"""

from __future__ import annotations

import functools
import io
import json
import tempfile
import uuid
from array import array
from collections.abc import Collection, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import date, timedelta

import duckdb
import fsspec
import polars as pl

from nids_core.checksum import parts_sha256
from nids_core.kafka.offsets import OffsetRange
from nids_core.schema import FLOW_SCHEMA, PROVENANCE_SCHEMA

LANDING_SCHEMA = {**FLOW_SCHEMA, **PROVENANCE_SCHEMA}
_PROVENANCE_KEY = ("uid", "topic", "partition", "offset")
_APPENDED_PREFIX = "batch-"


QUARANTINE_SCHEMA = {**PROVENANCE_SCHEMA, "raw": pl.Binary(), "error": pl.String()}


def batch_name(offsets: OffsetRange, digest: str) -> str:
    """File stem naming one micro-batch: its range and the digest of its records."""
    return f"{offsets.name}-{digest}"


def records_digest(flows: pl.DataFrame, rejects: pl.DataFrame) -> str:
    """A digest of what a range held, by identity: the (offset, uid) of every flow (a flow
    is identified by Zeek's uid) and the (offset, bytes) of every reject. Cheap (no pass
    over the whole batch's bytes), and different whenever reused offsets carry other flows."""
    raws = rejects["raw"].to_list()
    parts = (
        array("q", flows["offset"].to_list()).tobytes(),
        "\n".join(flows["uid"].to_list()).encode(),
        array("q", rejects["offset"].to_list()).tobytes(),
        array("q", (-1 if r is None else len(r) for r in raws)).tobytes(),
        b"".join(r for r in raws if r),
    )
    return parts_sha256(parts, 16)


@dataclass(frozen=True)
class BatchManifest:
    """What one landed batch holds: its offset range, counts, rows per UTC day and the
    digest of its records. Stored as flat JSON (the range's fields beside the counts)."""

    offsets: OffsetRange
    records: int
    flows: int
    quarantined: int
    rows_by_date: dict[str, int]
    digest: str

    @property
    def name(self) -> str:
        return batch_name(self.offsets, self.digest)

    def to_json(self) -> bytes:
        fields = {k: v for k, v in self.__dict__.items() if k != "offsets"}
        return json.dumps({**asdict(self.offsets), **fields}, indent=1).encode()

    @classmethod
    def from_json(cls, data: dict) -> BatchManifest:
        offsets = OffsetRange(*(data.pop(k) for k in ("topic", "partition", "start", "end")))
        return cls(offsets, **data)


def _stem(path: str) -> str:
    return path.rsplit("/", 1)[-1].removesuffix(".parquet")


def _neighbours(day: str) -> list[str]:
    d = date.fromisoformat(day)
    return [str(d - timedelta(days=1)), str(d + timedelta(days=1))]


def parquet_bytes(frame: pl.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.write_parquet(buf, compression="zstd", statistics=True)
    return buf.getvalue()


class ColdStore:
    """Parquet files under one root URL (`/path` or `s3://bucket/prefix`)."""

    def __init__(
        self, url: str, storage_options: dict | None = None, compaction_memory: str = "2GB"
    ):
        self.url = url.rstrip("/")
        self.compaction_memory = compaction_memory
        self.fs, self.root = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        protocols = self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        self.is_local = "file" in protocols

    # ------------------------------------------------------------------ paths
    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def landing_file(self, day: str, name: str) -> str:
        return self._path("landing", f"date={day}", f"{name}.parquet")

    def manifest_file(self, name: str) -> str:
        return self._path("landing", "_batches", f"{name}.json")

    def quarantine_file(self, name: str) -> str:
        return self._path("landing", "_quarantine", f"{name}.parquet")

    def range_file(self, offsets: OffsetRange) -> str:
        return self._path("landing", "_ranges", f"{offsets.name}.json")

    def cold_file(self, day: str) -> str:
        """A day's compacted file."""
        return self._path("flows", f"date={day}", "part-0.parquet")

    def appended_file(self, day: str, name: str) -> str:
        """Batch `name`'s flows of `day`, appended to the cold day since its compaction."""
        return self._path("flows", f"date={day}", f"{_APPENDED_PREFIX}{name}.parquet")

    # ------------------------------------------------------------------ writes
    def _put(self, path: str, data: bytes) -> None:
        parent = path.rsplit("/", 1)[0]
        if self.is_local:
            self.fs.makedirs(parent, exist_ok=True)
            tmp = f"{parent}/.{uuid.uuid4().hex}.tmp"
            try:
                with self.fs.open(tmp, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                self.fs.mv(tmp, path)
            except BaseException:
                # A full disk or a failed rename leaves no orphan temporary file behind.
                if self.fs.exists(tmp):
                    self.fs.rm(tmp)
                raise
        else:
            self.fs.pipe_file(path, data)
            self.fs.invalidate_cache(parent)

    def write_batch(
        self,
        offsets: OffsetRange,
        records: int,
        flows: pl.DataFrame,
        rejects: pl.DataFrame,
        digest: str,
    ) -> BatchManifest:
        """Land one batch: flows split by UTC day, rejects, the manifest, then the pointer
        from its range to the manifest."""
        name = batch_name(offsets, digest)
        flows = flows.select(list(LANDING_SCHEMA)).sort("offset")
        days = flows.with_columns(pl.col("ts").dt.date().cast(pl.String).alias("_day"))
        rows_by_date: dict[str, int] = {}
        for (day,), part in days.group_by("_day", maintain_order=True):
            self._put(self.landing_file(day, name), parquet_bytes(part.drop("_day")))
            rows_by_date[day] = part.height
        self._put(
            self.quarantine_file(name), parquet_bytes(rejects.select(list(QUARANTINE_SCHEMA)))
        )
        manifest = BatchManifest(
            offsets,
            records,
            flows.height,
            rejects.height,
            dict(sorted(rows_by_date.items())),
            digest,
        )
        body = manifest.to_json()
        self._put(self.manifest_file(name), body)
        self._put(self.range_file(offsets), body)
        return manifest

    # ------------------------------------------------------------------ reads
    def read_manifest(self, offsets: OffsetRange) -> BatchManifest:
        """The manifest last landed for this range."""
        return self._manifest(f"batch {offsets}", self.range_file(offsets))

    def read_batch_manifest(self, name: str) -> BatchManifest:
        """The manifest of the batch landed as `name` (see `batch_name`)."""
        return self._manifest(f"batch {name}", self.manifest_file(name))

    def _manifest(self, what: str, path: str) -> BatchManifest:
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        try:
            with self.fs.open(path, "rb") as fh:
                return BatchManifest.from_json(json.load(fh))
        except FileNotFoundError:
            raise FileNotFoundError(f"{what} has not landed: no {path}") from None

    def _read_parquet(self, path: str, columns: list[str] | None = None) -> pl.DataFrame:
        with self.fs.open(path, "rb") as fh:
            return pl.read_parquet(fh.read(), columns=columns)

    def read_batch(
        self, manifest: BatchManifest, columns: list[str] | None = None
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The landed flows and rejects of one batch (optionally only some columns, which
        must exist in both, such as the provenance columns)."""
        frames = [
            self._read_parquet(self.landing_file(d, manifest.name), columns)
            for d in manifest.rows_by_date
        ]
        empty = {k: v for k, v in LANDING_SCHEMA.items() if columns is None or k in columns}
        flows = pl.concat(frames) if frames else pl.DataFrame(schema=empty)
        rejects = self._read_parquet(self.quarantine_file(manifest.name), columns)
        return flows, rejects

    def landing_days(self) -> list[str]:
        """Days that have landed data, oldest first."""
        return self._days("landing")

    def _names(self, relative_dir: str) -> list[str]:
        """Names of the entries directly under a folder; [] if there is none."""
        base = self._path(relative_dir)
        self.fs.invalidate_cache(base)
        if not self.fs.exists(base):
            return []
        return [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(base, detail=False)]

    def _days(self, kind: str) -> list[str]:
        """The `date=D` folders under `kind/`, oldest first."""
        names = self._names(kind)
        return sorted(n.removeprefix("date=") for n in names if n.startswith("date="))

    def _day_files(self, kind: str, day: str) -> list[str]:
        d = self._path(kind, f"date={day}")
        self.fs.invalidate_cache(d)
        if not self.fs.exists(d):
            return []
        return sorted(p for p in self.fs.ls(d, detail=False) if p.endswith(".parquet"))

    def landing_files(self, day: str) -> list[str]:
        """Landing Parquet files holding flows of one UTC day."""
        return self._day_files("landing", day)

    def append_batches(
        self, names: Sequence[str], days: Collection[str] | None = None
    ) -> dict[str, int]:
        """Append landed batches to their cold days (only `days`, if given): each batch's
        landing file of a day is copied to `flows/date=D/batch-<name>.parquet`. The day's
        other files are neither read nor rewritten, so the cost is the batch's; appending a
        batch again writes the same bytes. Returns the rows appended per day."""
        rows: dict[str, int] = {}
        for name in names:
            manifest = self.read_batch_manifest(name)
            for day, count in manifest.rows_by_date.items():
                if days is not None and day not in days:
                    continue
                data = self.fs.cat_file(self.landing_file(day, name))
                self._put(self.appended_file(day, name), data)
                rows[day] = rows.get(day, 0) + count
        return dict(sorted(rows.items()))

    def rewrite_cold_day(self, day: date | str) -> int:
        """Compact one cold partition: rebuilt whole from the landing zone; returns its rows."""
        return self.rewrite_cold_days([str(day)])[str(day)]

    def rewrite_cold_days(self, days: Sequence[date | str]) -> dict[str, int]:
        """Compact cold partitions: each rebuilt whole from the landing zone into
        `part-0.parquet`, then the appended batch files it now holds are removed; returns
        rows per day.

        Rows are deduplicated on uid, the copy with the lowest Kafka provenance winning (as
        in the hot table), within the day and against the day before and after it: a flow
        delivered again with a `ts` on a neighbouring day is stored once, on the day of its
        winning copy. Each day's content depends only on the landing files of those three
        days, never on which days are rebuilt together, and is sorted by (ts, uid), so the
        same landing data always gives byte-identical files.
        """
        landing = functools.cache(self.landing_files)  # a range lists each day once
        rows = {}
        for day in sorted({str(d) for d in days}):
            files = landing(day)
            neighbours = [f for n in _neighbours(day) for f in landing(n)]
            rows[day] = self._compact(day, files, neighbours)
            # Batches appended since are in part-0 now; one landed after the listing above
            # keeps its appended file until the next compaction.
            compacted = {_stem(f) for f in files}
            for path in self._appended_files(day):
                if _stem(path).removeprefix(_APPENDED_PREFIX) in compacted:
                    self.fs.rm(path)
        return rows

    def _compact(self, day: str, files: list[str], neighbour_files: list[str]) -> int:
        """Write `part-0.parquet` of `day` from its landing `files` by the day's rules (see
        `_day_query`); returns its rows."""
        if not files:
            self._put(self.cold_file(day), parquet_bytes(pl.DataFrame(schema=LANDING_SCHEMA)))
            return 0
        target = self.cold_file(day)
        parent = target.rsplit("/", 1)[0]
        with self._day_query(files, neighbour_files) as (con, select, params, tmp):
            if self.is_local:
                self.fs.makedirs(parent, exist_ok=True)
                out = f"{parent}/.{uuid.uuid4().hex}.tmp"
            else:
                out = f"{tmp}/part-0.parquet"
            try:
                rows = con.execute(
                    f"COPY ({select}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)", params
                ).fetchone()[0]
                if self.is_local:
                    self.fs.mv(out, target)
                else:
                    self.fs.put_file(out, target)
                    self.fs.invalidate_cache(parent)
            finally:
                if self.is_local and self.fs.exists(out):
                    self.fs.rm(out)
        return int(rows)

    @contextmanager
    def _day_query(
        self, files: list[str], neighbour_files: list[str], columns: Sequence[str] | None = None
    ):
        """A DuckDB connection and the SELECT giving a day's rows from its `files`: one per
        uid, the copy with the lowest (topic, partition, offset) among these files and
        `neighbour_files` (ties: the first file in sorted order), none where a neighbouring
        day's copy wins; sorted by (ts, uid). DuckDB works within `compaction_memory`,
        spilling to a temporary directory, so a day of any size fits."""
        with tempfile.TemporaryDirectory(prefix="nids-cold-") as tmp:
            if not self.is_local:  # DuckDB reads local copies; the store is reached by fsspec
                local = [f"{tmp}/{i}.parquet" for i in range(len(files) + len(neighbour_files))]
                self.fs.get([*files, *neighbour_files], local)
                files, neighbour_files = local[: len(files)], local[len(files) :]
            config = {"memory_limit": self.compaction_memory, "temp_directory": f"{tmp}/spill"}
            con = duckdb.connect(config=config)
            try:
                con.execute("SET TimeZone = 'UTC'")  # timestamps come back as UTC, as stored
                key = "{'t': topic, 'p': \"partition\", 'o': \"offset\", 'i': file_index}"
                scan = "read_parquet($files, hive_partitioning = false)"
                con.execute(
                    f"CREATE TEMP TABLE winners AS SELECT uid, min({key}) AS w FROM {scan} "
                    "GROUP BY uid",
                    {"files": [*files, *neighbour_files]},
                )
                shown = ", ".join(f'"{c}"' for c in (columns or LANDING_SCHEMA))
                # The day's files come first in both lists: file_index names the same file.
                select = (
                    f"SELECT {shown} FROM {scan} AS f SEMI JOIN winners AS w "
                    f"ON w.uid = f.uid AND w.w = {key} ORDER BY ts, uid"
                )
                yield con, select, {"files": files}, tmp
            finally:
                con.close()

    def _appended_files(self, day: str) -> list[str]:
        files = self._day_files("flows", day)
        return [f for f in files if _stem(f).startswith(_APPENDED_PREFIX)]

    def appended_batches(self, day: date | str) -> list[str]:
        """Names of the batches appended to a cold day since its compaction."""
        return [_stem(f).removeprefix(_APPENDED_PREFIX) for f in self._appended_files(str(day))]

    def read_cold_day(self, day: date | str, columns: list[str] | None = None) -> pl.DataFrame:
        """The flows of one cold day. A compacted day is its file as written; a day with
        appended batches is read through the compaction's rules (dedupe on uid within the
        day and against its neighbours' cold files, sorted by ts and uid)."""
        day = str(day)
        files = self._day_files("flows", day)
        if not files:
            raise FileNotFoundError(f"no cold partition {day}: {self.cold_file(day)} is missing")
        if [_stem(f) for f in files] == ["part-0"]:
            return self._read_parquet(files[0], columns)
        neighbours = [f for n in _neighbours(day) for f in self._day_files("flows", n)]
        with self._day_query(files, neighbours, columns) as (con, select, params, _):
            return con.execute(select, params).pl()

    def predictions_file(self, day: str, model_version: str | None = None) -> str:
        kind = "predictions" if model_version is None else f"rescored/version={model_version}"
        return self._path(kind, f"date={day}", "part-0.parquet")

    def read_predictions(self, day: date | str, model_version: str | None = None):
        """Cold predictions of one day (None if there are none)."""
        path = self.predictions_file(str(day), model_version)
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        return self._read_parquet(path) if self.fs.exists(path) else None

    def merge_predictions(self, day: date | str, frame: pl.DataFrame) -> int:
        """Add served predictions to a day's file: a uid already there keeps its row, so
        exporting twice changes nothing. Returns the file's row count."""
        existing = self.read_predictions(day)
        merged = frame if existing is None else pl.concat([existing, frame], how="vertical_relaxed")
        merged = merged.unique("uid", keep="first", maintain_order=True).sort("uid")
        self._put(self.predictions_file(str(day)), parquet_bytes(merged))
        return merged.height

    def evidence_file(self, day: str) -> str:
        return self._path("evidence", f"date={day}", "part-0.parquet")

    def merge_evidence(self, day: date | str, frame: pl.DataFrame) -> int:
        """Add a day's evidence rows to its file: a row with the same `evidence_id` is
        replaced by the newer refresh of it (evidence is rebuilt as flows arrive), so
        exporting twice changes nothing. Returns the file's row count."""
        path = self.evidence_file(str(day))
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        existing = self._read_parquet(path) if self.fs.exists(path) else None
        merged = frame if existing is None else pl.concat([existing, frame], how="vertical_relaxed")
        merged = merged.unique("evidence_id", keep="last", maintain_order=True).sort("evidence_id")
        self._put(path, parquet_bytes(merged))
        return merged.height

    def write_rescored(self, day: date | str, model_version: str, frame: pl.DataFrame) -> int:
        self._put(self.predictions_file(str(day), model_version), parquet_bytes(frame.sort("uid")))
        return frame.height

    def cold_days(self) -> list[str]:
        """Days that have a cold partition, oldest first."""
        return self._days("flows")

    def write_frame(self, relative_path: str, frame: pl.DataFrame) -> str:
        """Write a derived Parquet file (e.g. a training set) atomically; returns its path."""
        path = self._path(relative_path)
        self._put(path, parquet_bytes(frame))
        return path

    def read_frame(self, relative_path: str) -> pl.DataFrame:
        path = self._path(relative_path)
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        return self._read_parquet(path)

    def exists(self, relative_path: str) -> bool:
        path = self._path(relative_path)
        self.fs.invalidate_cache(path.rsplit("/", 1)[0])
        return self.fs.exists(path)

    def list_frames(self, relative_dir: str) -> list[str]:
        """The Parquet files directly under a folder (relative paths, sorted); [] if none."""
        names = self._names(relative_dir)
        return sorted(f"{relative_dir}/{n}" for n in names if n.endswith(".parquet"))

    def cold_day_exists(self, day: date | str) -> bool:
        """Whether a cold day holds any file (compacted or appended)."""
        return bool(self._day_files("flows", str(day)))
