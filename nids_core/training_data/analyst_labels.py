"""Analyst labels on live flows: "this flow was an attack", "this host was infected from
10:00 to 12:00", "this alert was a false positive".

Labels are kept with their history: each `nids label` writes one new Parquet file under
`labels/` in the cold store and nothing is ever overwritten or deleted. A label names
flows either by uid or by host and time range (flows with the host at either end whose
`ts` lies in [start, end]); for each uid the newest label that names it wins.
"""

from __future__ import annotations

import csv
import ipaddress
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from nids_core.schema import LABEL_BENIGN, LABEL_MALICIOUS
from nids_core.stores.cold import ColdStore

LABELS_DIR = "labels"
VERDICTS = (LABEL_MALICIOUS, LABEL_BENIGN)
LABEL_SCHEMA: dict[str, pl.DataType] = {
    "entry": pl.String(),  # <file>:<row>, unique and ordered within a file
    "verdict": pl.String(),
    "uid": pl.String(),
    "host": pl.String(),
    "start": pl.Datetime("us", "UTC"),
    "end": pl.Datetime("us", "UTC"),
    "labelled_by": pl.String(),
    "why": pl.String(),
    "labelled_at": pl.Datetime("us", "UTC"),
}
RESOLVED_SCHEMA: dict[str, pl.DataType] = {
    "uid": pl.String(),
    "label": pl.String(),
    "labelled_by": pl.String(),
    "why": pl.String(),
    "labelled_at": pl.Datetime("us", "UTC"),
    "entry": pl.String(),
}
CSV_COLUMNS = ("verdict", "uid", "host", "from", "to", "by", "why")


class LabelError(ValueError):
    """A label that cannot be recorded; nothing was written."""


def parse_time(text: str) -> datetime:
    """Epoch seconds or ISO 8601 (a time without a zone is UTC)."""
    value = text.strip()
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise LabelError(f"{text!r} is not a time (ISO 8601 or epoch seconds)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LabelEntry:
    """One analyst statement: a verdict on one uid, or on a host over a time range."""

    verdict: str
    by: str
    why: str
    uid: str | None = None
    host: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise LabelError(f"unknown verdict {self.verdict!r}: use {' or '.join(VERDICTS)}")
        if not self.by.strip():
            raise LabelError("who labels is required (--by NAME)")
        if not self.why.strip():
            raise LabelError("why is required (--why TEXT)")
        by_uid = self.uid is not None
        by_range = (self.host, self.start, self.end) != (None, None, None)
        if by_uid == by_range:
            raise LabelError("name flows either by uid or by host with --from and --to")
        if by_range:
            if None in (self.host, self.start, self.end):
                raise LabelError("a host range needs all of --host, --from and --to")
            try:
                ipaddress.ip_address(self.host)
            except ValueError:
                raise LabelError(f"{self.host!r} is not an IP address") from None
            assert self.start is not None and self.end is not None
            if self.start > self.end:
                raise LabelError(
                    f"reversed time range: --from {self.start.isoformat()} is after "
                    f"--to {self.end.isoformat()}"
                )
        elif not self.uid or not self.uid.strip():
            raise LabelError("an empty uid")

    def describe(self) -> str:
        if self.uid is not None:
            return f"uid {self.uid}"
        assert self.start is not None and self.end is not None
        return f"host {self.host} from {self.start.isoformat()} to {self.end.isoformat()}"


def entries_from_csv(path: str | Path, by: str | None, why: str | None) -> list[LabelEntry]:
    """Labels from a CSV file with columns verdict, uid, host, from, to and optionally by and
    why (else --by/--why). Every row is checked before anything is written; an error names
    the row."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        header = [c.strip() for c in reader.fieldnames or []]
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if "verdict" not in header or unknown:
            raise LabelError(
                f"{path}: the header must be some of {', '.join(CSV_COLUMNS)} with verdict "
                f"(got {', '.join(header) or 'nothing'})"
            )
        entries = []
        for line, row in enumerate(reader, start=2):
            cell = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            try:
                entries.append(
                    LabelEntry(
                        verdict=cell.get("verdict", "").lower(),
                        by=cell.get("by") or by or "",
                        why=cell.get("why") or why or "",
                        uid=cell.get("uid") or None,
                        host=cell.get("host") or None,
                        start=parse_time(cell["from"]) if cell.get("from") else None,
                        end=parse_time(cell["to"]) if cell.get("to") else None,
                    )
                )
            except LabelError as exc:
                raise LabelError(f"{path} line {line}: {exc}") from None
    if not entries:
        raise LabelError(f"{path}: no labels in the file")
    return entries


def _endpoints(flows: pl.DataFrame) -> pl.DataFrame:
    """(uid, ts, host) for both ends of each flow."""
    return pl.concat(
        [
            flows.select("uid", "ts", pl.col(end).alias("host"))
            for end in ("orig_h", "resp_h")
            if end in flows.columns
        ]
    )


def matches(labels: pl.DataFrame, flows: pl.DataFrame) -> pl.DataFrame:
    """Every (label entry, uid) pair where the entry names the flow. `flows` needs uid, ts,
    orig_h, resp_h."""
    by_uid = (
        labels.filter(pl.col("uid").is_not_null())
        .join(flows.select("uid").unique(), on="uid", how="inner")
        .select(list(LABEL_SCHEMA))
    )
    ranges = labels.filter(pl.col("host").is_not_null()).drop("uid")
    by_host = (
        ranges.join(_endpoints(flows), on="host", how="inner")
        .filter(pl.col("ts").is_between(pl.col("start"), pl.col("end")))
        .select(list(LABEL_SCHEMA))
    )
    return pl.concat([by_uid, by_host]).unique(["entry", "uid"])


def check_names(entries: Sequence[LabelEntry], flows: pl.DataFrame) -> tuple[list[str], int]:
    """(the entries that name no flow in `flows`, described for a clear error before
    writing; how many distinct flows the entries name)."""
    frame = to_frame(entries, "check", datetime.now(UTC))
    hits = matches(frame, flows)
    hit = set(hits["entry"].to_list())
    missing = [
        e.describe() for e, name in zip(entries, frame["entry"], strict=True) if name not in hit
    ]
    return missing, hits["uid"].n_unique()


def to_frame(entries: Iterable[LabelEntry], file_id: str, at: datetime) -> pl.DataFrame:
    rows = [
        {
            "entry": f"{file_id}:{i:06d}",
            "verdict": e.verdict,
            "uid": e.uid,
            "host": e.host,
            "start": e.start,
            "end": e.end,
            "labelled_by": e.by,
            "why": e.why,
            "labelled_at": at,
        }
        for i, e in enumerate(entries)
    ]
    return pl.DataFrame(rows, schema=LABEL_SCHEMA)


def write_labels(store: ColdStore, entries: Sequence[LabelEntry], at: datetime) -> str:
    """Record the entries as one new file (never overwriting one); returns its path."""
    file_id = f"{at:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:8]}"
    return store.write_frame(f"{LABELS_DIR}/{file_id}.parquet", to_frame(entries, file_id, at))


def read_labels(store: ColdStore) -> pl.DataFrame:
    """Every label entry ever recorded, oldest first."""
    frames = [store.read_frame(p) for p in store.list_frames(LABELS_DIR)]
    if not frames:
        return pl.DataFrame(schema=LABEL_SCHEMA)
    return pl.concat(frames).cast(LABEL_SCHEMA).sort("labelled_at", "entry")  # type: ignore[arg-type]


def resolve_labels(labels: pl.DataFrame, flows: pl.DataFrame) -> pl.DataFrame:
    """The newest label of each uid in `flows` that some entry names (later entries win,
    by labelled_at and then by their order within a file)."""
    return newest_per_uid(matches(labels, flows))


def newest_per_uid(hits: pl.DataFrame) -> pl.DataFrame:
    """Of the (entry, uid) pairs `matches` found, the newest entry's label per uid."""
    if hits.height == 0:
        return pl.DataFrame(schema=RESOLVED_SCHEMA)
    return (
        hits.sort("labelled_at", "entry")
        .group_by("uid", maintain_order=True)
        .last()
        .select(
            "uid",
            pl.col("verdict").alias("label"),
            "labelled_by",
            "why",
            "labelled_at",
            "entry",
        )
        .sort("uid")
    )
