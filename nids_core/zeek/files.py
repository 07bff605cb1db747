"""Read Zeek conn logs as found in the wild: native TSV, JSON lines or CSV, plain or gzip.

Native TSV includes IoT-23's quirk where the last three columns
(`tunnel_parents label detailed-label`) are separated by three spaces instead of tabs, in
the `#fields` line and in every row. Published datasets' own field names (Stratosphere's
`detailedlabel`, UWF-ZeekData22's schema: nids_core.zeek.field_names) are mapped to Zeek's.

These are files handed in, not a live stream: there is no plausible time window (a `ts`
counting seconds from the start of the capture is kept as it is), and a row repeated
whole is read once and counted (`ParseResult.duplicates`).
"""

from __future__ import annotations

import gzip
import io
import re
import zlib
from enum import StrEnum
from pathlib import Path

import polars as pl

from nids_core.schema import CANONICAL_TO_ZEEK, REQUIRED_COLUMNS
from nids_core.zeek.field_names import to_zeek_names
from nids_core.zeek.json_log import parse_json_records
from nids_core.zeek.normalize import ParseResult, normalize
from nids_core.zeek.plausibility import OFFLINE_FILES

_GZIP_MAGIC = b"\x1f\x8b"
_IOT23_QUIRK = b"   "
_CAPTURE_SUFFIXES = re.compile(r"(\.gz|\.csv|\.log|\.labeled|-labeled|\.conn|\.json)+$")


# A conn log's header names these; another Zeek log (dns, http, ...) or any other table does not.
CONN_HEADER_FIELDS: tuple[str, ...] = (
    *(CANONICAL_TO_ZEEK[c] for c in REQUIRED_COLUMNS),
    "conn_state",
)


class NotZeekConnLog(ValueError):
    """A file that cannot be read as a Zeek conn log at all (not one bad row: the file)."""


def _normalized(frame: pl.DataFrame, first_line: int) -> ParseResult:
    """Zeek's names, each distinct row once (a row repeated whole is the same flow written
    twice, not two flows: counted in `duplicates`), normalized with no time window."""
    fields = to_zeek_names(frame)
    rows = _with_provenance(fields, first_line)
    distinct = rows.unique(subset=fields.columns, keep="first", maintain_order=True)
    parsed = normalize(distinct, OFFLINE_FILES)
    return ParseResult(parsed.flows, parsed.rejects, rows.height - distinct.height)


def _require_conn_fields(fields: list[str]) -> None:
    missing = [f for f in CONN_HEADER_FIELDS if f not in fields]
    if missing:
        raise NotZeekConnLog(f"not a Zeek conn log: no {', '.join(missing)} column")


class ZeekFormat(StrEnum):
    TSV = "tsv"
    JSON = "json"
    CSV = "csv"


# What one file handed in may hold once decompressed (NIDS_MAX_FILE_MB's default): a gzip
# of zeros expands about 1000-fold, so without a bound a 20 MB file takes a host down.
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
_CHUNK = 1 << 20


class FileTooLarge(ValueError):
    """A file whose content (decompressed) is larger than the limit."""


def gunzip(data: bytes, max_bytes: int = DEFAULT_MAX_FILE_BYTES, name: str = "file") -> bytes:
    """The content, gunzipped when it is gzip (detected by magic bytes, not name), read in
    chunks and refused with FileTooLarge (naming `name`) as soon as it would pass
    `max_bytes`, before it is held in memory."""
    if data[:2] != _GZIP_MAGIC:
        if len(data) > max_bytes:
            raise FileTooLarge(_too_large(name, max_bytes))
        return data
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
        while chunk := stream.read(_CHUNK):
            if out.tell() + len(chunk) > max_bytes:
                raise FileTooLarge(_too_large(name, max_bytes, decompressed=True))
            out.write(chunk)
    return out.getvalue()


def _too_large(name: str, max_bytes: int, decompressed: bool = False) -> str:
    what = "decompresses to more than" if decompressed else "is larger than"
    return (
        f"{name}: {what} {max_bytes / 2**20:.0f} MB, the limit on one file (NIDS_MAX_FILE_MB); "
        "split the capture or raise the limit"
    )


def read_bytes(path: str | Path, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """The file's content, gunzipped when it is gzip, refused past `max_bytes` (the file
    on disk, or its decompressed content)."""
    path = Path(path)
    if path.stat().st_size > max_bytes:
        raise FileTooLarge(_too_large(str(path), max_bytes))
    return gunzip(path.read_bytes(), max_bytes, str(path))


def detect_format(data: bytes) -> ZeekFormat:
    head = data.lstrip()[:64]
    if head.startswith(b"#separator") or head.startswith(b"#fields"):
        return ZeekFormat.TSV
    if head.startswith(b"{"):
        return ZeekFormat.JSON
    return ZeekFormat.CSV


def capture_name(path: str | Path) -> str:
    """A capture's name from its file name: `CTU-Malware-Capture-34-1.conn.log.labeled.gz`
    -> `CTU-Malware-Capture-34-1`."""
    return _CAPTURE_SUFFIXES.sub("", Path(path).name)


def _with_provenance(frame: pl.DataFrame, first_line: int) -> pl.DataFrame:
    raw = frame.select(pl.struct(pl.all()).struct.json_encode().cast(pl.Binary).alias("raw"))
    return frame.with_columns(
        pl.int_range(first_line, first_line + frame.height, dtype=pl.Int64).alias("position"),
        raw["raw"],
    )


def parse_tsv(data: bytes) -> ParseResult:
    """Native Zeek TSV with `#separator`/`#fields` header; `-` is unset, `(empty)` empty."""
    lines = data.split(b"\n")
    header: dict[bytes, bytes] = {}
    first_data_line = 0
    for i, line in enumerate(lines):
        if line.startswith(b"#"):
            key, _, value = line.partition(b"\t")
            if key == b"#separator" or line.startswith(b"#separator "):
                key, _, value = line.partition(b" ")
            header[key[1:]] = value.rstrip(b"\r")
        else:
            first_data_line = i
            break
    fields_line = header.get(b"fields")
    if fields_line is None:
        raise ValueError("native Zeek log without a #fields header line")
    quirk = _IOT23_QUIRK in fields_line
    if quirk:
        fields_line = fields_line.replace(_IOT23_QUIRK, b"\t")
        data = data.replace(_IOT23_QUIRK, b"\t")
    fields = fields_line.decode().split("\t")
    path = header.get(b"path", b"conn").decode()
    if path != "conn":
        raise NotZeekConnLog(f"a Zeek {path} log, not a conn log")
    _require_conn_fields(list(to_zeek_names(pl.DataFrame(schema=fields)).columns))
    unset = header.get(b"unset_field", b"-").decode()
    empty = header.get(b"empty_field", b"(empty)").decode()
    frame = pl.read_csv(
        io.BytesIO(data),
        separator="\t",
        has_header=False,
        new_columns=fields,
        schema_overrides=dict.fromkeys(fields, pl.String),
        comment_prefix="#",
        quote_char=None,
        null_values=[unset],
        infer_schema=False,
        truncate_ragged_lines=True,
    )
    frame = frame.with_columns(
        pl.when(pl.col(f) == empty).then(pl.lit("")).otherwise(pl.col(f)).alias(f) for f in fields
    )
    return _normalized(frame, first_data_line + 1)


def parse_csv(data: bytes) -> ParseResult:
    """CSV with Zeek's column names (`id.orig_h`, ...) or UWF-ZeekData22's; empty cells
    are unset."""
    frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
    _require_conn_fields(to_zeek_names(frame.head(0)).columns)
    return _normalized(frame, 2)


def parse_json_lines(data: bytes) -> ParseResult:
    """Zeek JSON logs, one object per line, bare or wrapped as `{"conn": {...}}`."""
    lines = data.split(b"\n")
    seen: set[bytes] = set()
    keep = []
    for i, line in enumerate(lines):
        text = line.strip()
        if text and text not in seen:
            seen.add(text)
            keep.append((i + 1, line))
    repeated = sum(1 for line in lines if line.strip()) - len(keep)
    parsed = parse_json_records([v for _, v in keep], [n for n, _ in keep], plausible=OFFLINE_FILES)
    return ParseResult(parsed.flows, parsed.rejects, repeated)


_PARSERS = {
    ZeekFormat.TSV: parse_tsv,
    ZeekFormat.JSON: parse_json_lines,
    ZeekFormat.CSV: parse_csv,
}


def parse_zeek_bytes(data: bytes, capture: str) -> ParseResult:
    """Read a Zeek conn log's content (already gunzipped) into canonical flows and rejects;
    `capture` fills the `capture` column where the records carry none.

    Raises NotZeekConnLog when the content is not a conn log at all: another kind of table,
    another Zeek log, or not one readable conn record in it.
    """
    try:
        parsed = _PARSERS[detect_format(data)](data)
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise NotZeekConnLog(f"cannot be read as a Zeek conn log: {first_line}") from exc
    if parsed.flows.height == 0 and parsed.rejects.height:
        reason = parsed.rejects["error"].mode().sort()[0]
        raise NotZeekConnLog(
            f"not one readable Zeek conn record in {parsed.rejects.height} rows "
            f"(most common reason: {reason})"
        )
    flows = parsed.flows.with_columns(pl.col("capture").fill_null(capture))
    return ParseResult(flows=flows, rejects=parsed.rejects, duplicates=parsed.duplicates)


def read_zeek_file(
    path: str | Path, capture: str | None = None, max_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> ParseResult:
    """Read any supported Zeek conn log into canonical flows and rejects.

    `capture` (default: derived from the file name) fills the `capture` column where the
    records carry none, so captures stay apart when several are merged. Raises
    NotZeekConnLog, naming the file, when it is not a conn log, and FileTooLarge when its
    content passes `max_bytes`.
    """
    try:
        data = read_bytes(path, max_bytes)
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise NotZeekConnLog(f"{path}: a broken gzip file: {exc}") from exc
    try:
        return parse_zeek_bytes(data, capture if capture is not None else capture_name(path))
    except NotZeekConnLog as exc:
        raise NotZeekConnLog(f"{path}: {exc}") from exc
