"""Parse Zeek JSON conn records (bare, or wrapped as `{"conn": {...}}`) in bulk.

The fast path hands a whole batch to polars' NDJSON reader with every field read as a
string; when that fails because one record is not valid JSON, the batch is bisected so
only the bad records take the slow path and get a precise reason.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import polars as pl

from nids_core.normalize import ParseResult, normalize
from nids_core.schema import REJECT_SCHEMA, ZEEK_TO_CANONICAL

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
_WRAPPER_KEY = "conn"
_STRING_SCHEMA = {name: pl.String() for name in [*ZEEK_TO_CANONICAL, _WRAPPER_KEY]}


def _json_error(value: bytes) -> str:
    try:
        parsed = json.loads(value)
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8: {exc.reason} at byte {exc.start}"
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    if not isinstance(parsed, dict):
        return f"not a JSON object: {type(parsed).__name__}"
    return "unreadable JSON record"


def _read_document(document: bytes) -> pl.DataFrame:
    """NDJSON with every known field read as a string (typed later by `normalize`)."""
    return pl.read_ndjson(io.BytesIO(document), schema=_STRING_SCHEMA)


def _read_strings(lines: list[bytes]) -> pl.DataFrame:
    return _read_document(b"\n".join(lines))


def _parse_chunk(
    lines: list[bytes],
    idx: list[int],
    good: list[tuple[list[int], pl.DataFrame]],
    bad: list[tuple[int, str]],
) -> None:
    try:
        good.append((idx, _read_strings(lines)))
    except Exception:
        if len(lines) == 1:
            bad.append((idx[0], _json_error(lines[0])))
            return
        mid = len(lines) // 2
        _parse_chunk(lines[:mid], idx[:mid], good, bad)
        _parse_chunk(lines[mid:], idx[mid:], good, bad)


def _unwrap(frame: pl.DataFrame) -> pl.DataFrame:
    """Replace rows wrapped as {"conn": {...}} (zeek-kafka `tag_json`) by their inner record."""
    wrapped_mask = frame[_WRAPPER_KEY].is_not_null()
    if not wrapped_mask.any():
        return frame.drop(_WRAPPER_KEY)
    wrapped = frame.filter(wrapped_mask)
    inner = _read_document("\n".join(wrapped[_WRAPPER_KEY].to_list()).encode()).drop(_WRAPPER_KEY)
    inner = inner.with_columns(wrapped.select("position", "raw"))
    bare = frame.filter(~wrapped_mask).drop(_WRAPPER_KEY)
    return pl.concat([bare, inner.select(bare.columns)]).sort("position")


def _as_ndjson(values: Sequence[bytes | None], max_message_bytes: int) -> bytes | None:
    """The values as one NDJSON document, one line each, when none is empty, too large or
    spans lines (checked in C, not per record in Python); else None. The reader then
    refuses any line that is not a JSON object, and skips blank ones (caught by a count)."""
    if not values or None in values:
        return None
    lengths = list(map(len, values))  # type: ignore[arg-type]
    if min(lengths) == 0 or max(lengths) > max_message_bytes:
        return None
    joined = b"\n".join(values)  # type: ignore[arg-type]
    if joined.count(b"\n") != len(values) - 1 or b"\r" in joined:
        return None
    return joined


def _parse_clean_batch(
    values: Sequence[bytes | None], positions: Sequence[int], max_message_bytes: int
) -> ParseResult | None:
    """The common case in bulk: every value is a one-line JSON object. None when the batch
    needs the record-by-record path."""
    document = _as_ndjson(values, max_message_bytes)
    if document is None:
        return None
    try:
        frame = _read_document(document)
    except Exception:
        return None
    if frame.height != len(values):
        return None
    frame = frame.with_columns(
        pl.Series("position", positions, dtype=pl.Int64), pl.lit(None, dtype=pl.Binary).alias("raw")
    )
    parsed = normalize(_unwrap(frame))
    rejects = parsed.rejects
    if rejects.height:  # attach the raw bytes of the few rejected records
        index = {p: i for i, p in enumerate(positions)}
        raw = [values[index[p]] for p in rejects["position"].to_list()]
        rejects = rejects.with_columns(pl.Series("raw", raw, dtype=pl.Binary))
    return ParseResult(flows=parsed.flows, rejects=rejects.sort("position"))


def parse_json_records(
    values: Sequence[bytes | None],
    positions: Sequence[int],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> ParseResult:
    """Parse Zeek JSON records (Kafka message values or JSON-log lines) into canonical flows.

    `positions` are the Kafka offsets (or line numbers) reported with each reject.
    """
    if len(values) != len(positions):
        raise ValueError("values and positions must have the same length")
    clean = _parse_clean_batch(values, positions, max_message_bytes)
    if clean is not None:
        return clean
    lines: list[bytes] = []
    line_idx: list[int] = []
    rejected: list[tuple[int, str]] = []
    for i, value in enumerate(values):
        if value is None or not value.strip():
            rejected.append((i, "empty message"))
        elif len(value) > max_message_bytes:
            rejected.append(
                (i, f"message too large: {len(value)} bytes > limit {max_message_bytes}")
            )
        elif value.lstrip()[:1] != b"{":
            rejected.append((i, _json_error(value)))
        else:
            if b"\n" in value or b"\r" in value:
                try:  # a pretty-printed record: compact it to one line
                    value = json.dumps(json.loads(value)).encode()
                except (ValueError, UnicodeDecodeError):
                    rejected.append((i, _json_error(value)))
                    continue
            lines.append(value)
            line_idx.append(i)

    chunks: list[tuple[list[int], pl.DataFrame]] = []
    if lines:
        _parse_chunk(lines, line_idx, chunks, rejected)
    frames = []
    for idx, frame in chunks:
        frames.append(
            frame.with_columns(
                pl.Series("position", [positions[i] for i in idx], dtype=pl.Int64),
                pl.Series("raw", [values[i] for i in idx], dtype=pl.Binary),
            )
        )
    if frames:
        strings = _unwrap(pl.concat(frames))
        parsed = normalize(strings)
    else:
        parsed = normalize(
            pl.DataFrame(schema={**_STRING_SCHEMA, "position": pl.Int64, "raw": pl.Binary}).drop(
                _WRAPPER_KEY
            )
        )
    early = pl.DataFrame(
        {
            "position": [positions[i] for i, _ in rejected],
            "raw": [values[i] for i, _ in rejected],
            "error": [reason for _, reason in rejected],
        },
        schema=REJECT_SCHEMA,
    )
    rejects = pl.concat([early, parsed.rejects]).sort("position")
    return ParseResult(flows=parsed.flows, rejects=rejects)
