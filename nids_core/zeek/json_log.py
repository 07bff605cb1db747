"""Parse Zeek JSON conn records (bare, or wrapped as `{"conn": {...}}`) in bulk.

The fast path hands a whole batch to polars' NDJSON reader with every field read as a
string; when that fails because one record is not valid JSON, the batch is bisected so
only the bad records take the slow path and get a precise reason. Whatever a record holds,
it becomes a flow or a reject with a reason: no content makes a batch fail.

Records are read strictly, the same way on every path: no NaN/Infinity, no numbers that
overflow a double, no byte-order mark, no duplicate keys (readers disagree on which value
wins: this one kept the first, Python's `json` keeps the last).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from datetime import datetime

import polars as pl

from nids_core.schema import REJECT_SCHEMA, ZEEK_TO_CANONICAL
from nids_core.zeek.normalize import ParseResult, normalize
from nids_core.zeek.plausibility import PlausibleTime

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
_WRAPPER_KEY = "conn"
_FIELDS = list(ZEEK_TO_CANONICAL)
_INNER = pl.Struct({name: pl.String() for name in _FIELDS})
_READ_SCHEMA = {**{name: pl.String() for name in _FIELDS}, _WRAPPER_KEY: _INNER}
_BOM = b"\xef\xbb\xbf"


class _StrictJsonError(ValueError):
    """A record that is JSON to lenient readers but not to this contract."""


def _no_constant(token: str):
    raise _StrictJsonError(f"invalid JSON: non-finite number {token}")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _StrictJsonError(f"invalid JSON: number out of range: {text[:40]}")
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise _StrictJsonError(f"duplicate JSON key {key[:40]!r}")
        seen.add(key)
    return dict(pairs)


def strict_loads(value: bytes) -> object:
    """Python's reading of one record under this module's rules (raises on any breach)."""
    if value.startswith(_BOM):
        raise _StrictJsonError("invalid JSON: starts with a UTF-8 byte-order mark")
    text = value.decode("utf-8")
    return json.loads(
        text,
        parse_constant=_no_constant,
        parse_float=_finite_float,
        object_pairs_hook=_unique_keys,
    )


def _json_kind(value: object) -> str:
    kinds = {str: "string", bool: "boolean", int: "number", float: "number", list: "array"}
    return kinds.get(type(value), type(value).__name__)


def _json_error(value: bytes, reader_error: str = "") -> str:
    """The precise reason one record cannot be read."""
    try:
        parsed = strict_loads(value)
    except UnicodeDecodeError as exc:
        return f"invalid UTF-8: {exc.reason} at byte {exc.start}"
    except _StrictJsonError as exc:
        return str(exc)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} at column {exc.colno}"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    if not isinstance(parsed, dict):
        return f"not a JSON object: {type(parsed).__name__}"
    inner = parsed.get(_WRAPPER_KEY)
    if inner is not None and not isinstance(inner, dict):
        return f"`conn` wrapper holds a JSON {_json_kind(inner)}, not an object"
    return f"unreadable JSON record: {reader_error[:120]}" if reader_error else "unreadable record"


def _read_document(document: bytes) -> pl.DataFrame:
    """NDJSON with every known field read as a string (typed later by `normalize`)."""
    return pl.read_ndjson(io.BytesIO(document), schema=_READ_SCHEMA)


def _parse_chunk(
    lines: list[bytes],
    idx: list[int],
    good: list[tuple[list[int], pl.DataFrame]],
    bad: list[tuple[int, str]],
) -> None:
    try:
        frame = _read_document(b"\n".join(lines))
        if frame.height != len(lines):
            raise ValueError(f"{frame.height} rows from {len(lines)} lines")
        good.append((idx, frame))
    except Exception as exc:
        if len(lines) == 1:
            bad.append((idx[0], _json_error(lines[0], str(exc))))
            return
        mid = len(lines) // 2
        _parse_chunk(lines[:mid], idx[:mid], good, bad)
        _parse_chunk(lines[mid:], idx[mid:], good, bad)


def _unwrap(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows wrapped as {"conn": {...}} (zeek-kafka `tag_json`) take their inner fields."""
    wrapped = pl.col(_WRAPPER_KEY).is_not_null()
    inner = pl.col(_WRAPPER_KEY).struct
    return frame.with_columns(
        pl.when(wrapped).then(inner.field(name)).otherwise(pl.col(name)).alias(name)
        for name in _FIELDS
    ).drop(_WRAPPER_KEY)


def _keys_accounted(frame: pl.DataFrame) -> pl.Series:
    """Per row: keys the reader saw (known fields with a value, top level and in `conn`)."""
    top = [pl.col(name).is_not_null() for name in _FIELDS]
    inner = [pl.col(_WRAPPER_KEY).struct.field(name).is_not_null() for name in _FIELDS]
    return frame.select(
        pl.sum_horizontal([*top, pl.col(_WRAPPER_KEY).is_not_null(), *inner]).alias("n")
    )["n"]


def _keys_accounted_total(frame: pl.DataFrame) -> int:
    """`_keys_accounted` summed over the batch, from null counts (no per-row pass)."""
    inner = frame[_WRAPPER_KEY].struct.unnest()
    cells = frame.height * frame.width + inner.height * inner.width
    return cells - sum(frame.null_count().row(0)) - sum(inner.null_count().row(0))


def _key_marks(text: bytes) -> int:
    """Occurrences of `":` that can end a key: all of them, less those that open a string
    starting with `:` (IPv6 addresses such as `::1` or `::ffff:10.0.0.1`, which Zeek writes
    as values), since no JSON value starts with a colon."""
    return text.count(b'":') - text.count(b'"::')


def _duplicate_key_rejects(
    values: Sequence[bytes], frame: pl.DataFrame, document: bytes | None = None
) -> dict[int, str]:
    """Rows (index into `values`) holding a duplicate key, with the reason.

    A row has more `"name":` occurrences (less the `"::` that open IPv6 values such as
    `::1`) than the keys the reader accounted for (known fields with a value, explicit
    nulls) only if it holds unknown fields, nested objects, such text inside a string, or
    a duplicate key. The batch is first compared as a whole
    (counted in C over the joined document); unknown field names of its first record are
    learnt, so a sensor that adds e.g. `community_id` to every record costs one more count.
    Only when the totals still differ are rows counted one by one, and the suspects read
    again by Python to tell which.
    """
    if not values:
        return {}
    doc = document if document is not None else b"\n".join(values)
    keys = doc.count(b'":')
    accounted = _keys_accounted_total(frame)
    if keys == accounted:  # Zeek itself leaves unset fields out
        return {}
    # Marks are never fewer than keys read, so only a batch off by some looks for the `"::`
    # of IPv6 values (one more pass over the document, spared to IPv4-only batches).
    keys -= doc.count(b'"::')
    if keys == accounted:
        return {}
    accounted += doc.count(b'":null')  # explicit nulls, as some producers write them
    if keys == accounted:
        return {}
    learnt = [b'"%s":' % k for k in _unknown_scalar_keys(values[0])]
    if keys == accounted + sum(doc.count(k) for k in learnt):
        return {}
    per_row = [_key_marks(v) - v.count(b'":null') - sum(v.count(k) for k in learnt) for v in values]
    suspect = (pl.Series(per_row) > _keys_accounted(frame)).arg_true().to_list()
    rejects: dict[int, str] = {}
    for i in suspect:
        try:
            strict_loads(values[i])
        except _StrictJsonError as exc:
            rejects[i] = str(exc)
        except (ValueError, RecursionError):
            rejects[i] = _json_error(values[i])
    return rejects


def _unknown_scalar_keys(value: bytes) -> list[bytes]:
    """Unknown keys of a record (and of its `conn` object) whose values are scalars."""
    try:
        record = json.loads(value)
    except (ValueError, RecursionError):
        return []
    if not isinstance(record, dict):
        return []
    objects = [
        record,
        record.get(_WRAPPER_KEY) if isinstance(record.get(_WRAPPER_KEY), dict) else {},
    ]
    return [
        json.dumps(k)[1:-1].encode()
        for obj in objects
        for k, v in obj.items()
        if k not in _READ_SCHEMA and not isinstance(v, dict | list)
    ]


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
    # The reader rejects a byte-order mark on any line (then the batch is read record by
    # record, and the BOM gets its own reason); no need to search the document for one.
    if joined.count(b"\n") != len(values) - 1 or b"\r" in joined:
        return None
    return joined


def _finish(
    values: Sequence[bytes],
    positions: Sequence[int],
    frame: pl.DataFrame,
    early: pl.DataFrame,
    plausible: PlausibleTime | None,
    now: datetime | None,
    document: bytes | None = None,
    arrived: Sequence[bytes | None] | None = None,
) -> ParseResult:
    """Row i of `frame` was read from `values[i]` (at `positions[i]`): drop rows with
    duplicate keys, unwrap, normalize. Rejects (with `early`, found before reading) carry
    the bytes as they arrived (`arrived[i]`, default `values[i]`)."""
    arrived = values if arrived is None else arrived
    duplicates = _duplicate_key_rejects(values, frame, document)
    row_positions = positions
    if duplicates:
        keep = [i for i in range(len(values)) if i not in duplicates]
        frame = frame[keep]
        row_positions = [positions[i] for i in keep]
    frame = frame.with_columns(
        pl.Series("position", row_positions, dtype=pl.Int64),
        pl.lit(None, dtype=pl.Binary).alias("raw"),
    )
    parsed = normalize(_unwrap(frame), plausible, now)
    later = parsed.rejects
    if later.height:  # attach the raw bytes of the (few) rejected records
        by_position = {p: i for i, p in enumerate(positions)}
        raw = [arrived[by_position[p]] for p in later["position"]]
        later = later.with_columns(pl.Series("raw", raw, dtype=pl.Binary))
    found = pl.DataFrame(
        {
            "position": [positions[i] for i in duplicates],
            "raw": [arrived[i] for i in duplicates],
            "error": list(duplicates.values()),
        },
        schema=REJECT_SCHEMA,
    )
    rejects = pl.concat([early, found, later.select(list(REJECT_SCHEMA))]).sort("position")
    return ParseResult(flows=parsed.flows, rejects=rejects)


def _parse_clean_batch(
    values: Sequence[bytes | None],
    positions: Sequence[int],
    max_message_bytes: int,
    plausible: PlausibleTime | None,
    now: datetime | None,
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
    return _finish(
        values, positions, frame, pl.DataFrame(schema=REJECT_SCHEMA), plausible, now, document
    )  # type: ignore[arg-type]


def _parse_records(
    values: Sequence[bytes | None],
    positions: Sequence[int],
    max_message_bytes: int,
    plausible: PlausibleTime | None,
    now: datetime | None,
) -> ParseResult:
    clean = _parse_clean_batch(values, positions, max_message_bytes, plausible, now)
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
                    value = json.dumps(strict_loads(value)).encode()
                except (ValueError, RecursionError):
                    rejected.append((i, _json_error(value)))
                    continue
            lines.append(value)
            line_idx.append(i)

    chunks: list[tuple[list[int], pl.DataFrame]] = []
    if lines:
        _parse_chunk(lines, line_idx, chunks, rejected)
    read_idx = [i for idx, _ in chunks for i in idx]
    frame = (
        pl.concat([f for _, f in chunks]) if chunks else pl.DataFrame(schema=_READ_SCHEMA)  # type: ignore[arg-type]
    )
    compacted = dict(zip(line_idx, lines, strict=True))
    early = pl.DataFrame(
        {
            "position": [positions[i] for i, _ in rejected],
            "raw": [values[i] for i, _ in rejected],
            "error": [reason for _, reason in rejected],
        },
        schema=REJECT_SCHEMA,
    )
    # Rejects keep the bytes as they arrived, not a compacted pretty-printed form.
    return _finish(
        [compacted[i] for i in read_idx],
        [positions[i] for i in read_idx],
        frame,
        early,
        plausible,
        now,
        arrived=[values[i] for i in read_idx],
    )


def _isolate(
    parse: Callable[[Sequence[bytes | None], Sequence[int]], ParseResult],
    values: Sequence[bytes | None],
    positions: Sequence[int],
) -> ParseResult:
    """Run `parse`; if it fails on some content no rule foresaw, split the batch until the
    record that breaks it is alone, and quarantine that record with the error."""
    try:
        return parse(values, positions)
    except Exception as exc:
        if len(values) == 1:
            reject = pl.DataFrame(
                {
                    "position": [positions[0]],
                    "raw": [values[0]],
                    "error": [f"unparseable record ({type(exc).__name__}: {str(exc)[:120]})"],
                },
                schema=REJECT_SCHEMA,
            )
            empty = parse([], [])
            return ParseResult(flows=empty.flows, rejects=reject)
        mid = len(values) // 2
        left = _isolate(parse, values[:mid], positions[:mid])
        right = _isolate(parse, values[mid:], positions[mid:])
        return ParseResult(
            flows=pl.concat([left.flows, right.flows]),
            rejects=pl.concat([left.rejects, right.rejects]).sort("position"),
        )


def parse_json_records(
    values: Sequence[bytes | None],
    positions: Sequence[int],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    plausible: PlausibleTime | None = None,
    now: datetime | None = None,
) -> ParseResult:
    """Parse Zeek JSON records (Kafka message values or JSON-log lines) into canonical flows.

    `positions` are the Kafka offsets (or line numbers) reported with each reject; `ts`
    must lie in the `plausible` window at `now` (default: the clock).
    """
    if len(values) != len(positions):
        raise ValueError("values and positions must have the same length")

    def parse(vs: Sequence[bytes | None], ps: Sequence[int]) -> ParseResult:
        return _parse_records(vs, ps, max_message_bytes, plausible, now)

    return _isolate(parse, values, positions)
