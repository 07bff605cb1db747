"""Turn string-typed Zeek records into the canonical flow schema, one reason per reject.

Every reader (Kafka JSON, TSV, CSV, JSON lines) first produces a frame of *strings* keyed by
Zeek's own field names, plus `position` (Kafka offset or file line) and `raw` (the original
bytes). `normalize` casts that frame in a few vectorised passes and splits it into valid
flows and rejected records, each reject carrying a human-readable reason.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from nids_core.schema import (
    BOOLEAN_COLUMNS,
    CANONICAL_TO_ZEEK,
    FLOW_COLUMNS,
    FLOW_SCHEMA,
    INTEGER_COLUMNS,
    LABEL_BENIGN,
    LABEL_MALICIOUS,
    MAX_PORT,
    NON_NEGATIVE_COLUMNS,
    PORT_COLUMNS,
    REJECT_SCHEMA,
    REQUIRED_COLUMNS,
    ZEEK_TO_CANONICAL,
)
from nids_core.zeek.plausibility import PlausibleTime

_TRUE = ("T", "t", "true", "True", "TRUE", "1")
_FALSE = ("F", "f", "false", "False", "FALSE", "0")
_ISO_NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f")
_ISO_ZONED_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M:%S%:z", "%Y-%m-%dT%H:%M:%S%.f%z")
# Epoch seconds that fit microseconds in 64 bits; the plausible window then decides.
_MAX_ABS_EPOCH_SECONDS = 9e12
_TEXT_COLUMNS = ("uid", "proto", "service", "conn_state", "history", "label", "detailed_label")
# Longest value kept per text field (Zeek's uids are 18 characters, its services, states
# and histories a few dozen): a longer one is rejected, never stored.
MAX_UID_CHARS = 64
MAX_TEXT_CHARS = 256
# Control, format and bidirectional-override characters (NUL, U+202E, ...) in a uid.
_UNPRINTABLE = r"[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]"


def canonical_address(text: str) -> tuple[str | None, str | None]:
    """(the address in its one canonical form, None) or (None, why it is refused).

    Written as Zeek writes `addr`: IPv4 dotted quad; IPv6 compressed, lower case; an
    IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as its IPv4 address; a zone (`%eth0`)
    dropped, the host being the same. Refused: what `ipaddress` does not read, a bare
    integer (`167772161`) and IPv4 with leading zeros (`010.001.001.001`: octal to some
    readers, decimal to others)."""
    value = text.strip()
    address, _, zone = value.partition("%")
    if zone and ":" not in address:
        return None, "a zone on an IPv4 address"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        if address.isdigit():
            return None, "an integer, not an address"
        octets = address.split(".")
        if (
            len(octets) == 4
            and all(o.isdigit() and int(o) <= 255 for o in octets)
            and any(len(o) > 1 and o.startswith("0") for o in octets)
        ):
            return None, "IPv4 with leading zeros, ambiguous"
        return None, "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped), None
    return ip.compressed, None


def _canonical_addresses(frame: pl.DataFrame, column: str) -> pl.DataFrame:
    """`column` in canonical form and `_why_<column>` (why a value is refused), computed
    once per distinct value: a batch holds far fewer hosts than flows."""
    distinct = frame.get_column(column).drop_nulls().unique()
    canon, why = {}, {}
    for value in distinct.to_list():
        canon[value], why[value] = canonical_address(value)
    mapping = pl.DataFrame(
        {
            column: list(canon),
            f"_canon_{column}": list(canon.values()),
            f"_why_{column}": [why[v] for v in canon],
        },
        schema={column: pl.String, f"_canon_{column}": pl.String, f"_why_{column}": pl.String},
    )
    joined = frame.join(mapping, on=column, how="left", maintain_order="left")
    return joined.with_columns(pl.col(f"_canon_{column}").alias(column)).drop(f"_canon_{column}")


@dataclass(frozen=True)
class ParseResult:
    """Valid flows (canonical schema plus `position`) and rejects (position, raw, error)."""

    flows: pl.DataFrame
    rejects: pl.DataFrame
    # Rows of a file repeated whole (every field the same), counted once and reported.
    duplicates: int = 0

    @property
    def records(self) -> int:
        return self.flows.height + self.rejects.height


def _parse_epoch(col: pl.Expr) -> pl.Expr:
    epoch = col.str.strip_chars().cast(pl.Float64, strict=False)
    return (
        pl.when(epoch.is_finite() & (epoch.abs() < _MAX_ABS_EPOCH_SECONDS))
        .then((epoch * 1_000_000).round(0).cast(pl.Int64))
        .cast(pl.Datetime("us"))
        .dt.replace_time_zone("UTC")
    )


def _parse_iso_ts(col: pl.Expr) -> pl.Expr:
    text = col.str.strip_chars()
    iso_text = text.str.replace(r"Z$", "")
    candidates = [
        iso_text.str.to_datetime(fmt, time_unit="us", strict=False).dt.replace_time_zone("UTC")
        for fmt in _ISO_NAIVE_FORMATS
    ]
    candidates += [
        text.str.to_datetime(fmt, time_unit="us", time_zone="UTC", strict=False)
        for fmt in _ISO_ZONED_FORMATS
    ]
    return pl.coalesce(candidates)


def _parse_bool(col: pl.Expr) -> pl.Expr:
    return pl.when(col.is_in(_TRUE)).then(True).when(col.is_in(_FALSE)).then(False)


def _parse_set(col: pl.Expr) -> pl.Expr:
    # JSON arrays arrive as '["a", "b"]', TSV/CSV sets as 'a,b'; '(empty)' was made ''.
    items = col.str.replace_all(r'[\[\]"\s]', "").str.split(",")
    return items.list.eval(pl.element().filter(pl.element() != ""))


def _normalize_label(col: pl.Expr) -> pl.Expr:
    text = col.str.strip_chars().str.to_lowercase()
    return (
        pl.when(text == LABEL_BENIGN)
        .then(pl.lit(LABEL_BENIGN))
        .when(text == LABEL_MALICIOUS)
        .then(pl.lit(LABEL_MALICIOUS))
    )


def _text_or_null(col: pl.Expr) -> pl.Expr:
    text = col.str.strip_chars()
    return pl.when(text.is_in(["", "-"])).then(None).otherwise(text)


def normalize(
    strings: pl.DataFrame,
    plausible: PlausibleTime | None = None,
    now: datetime | None = None,
) -> ParseResult:
    """Cast a frame of Zeek string fields (plus `position`, `raw`) to the canonical schema.

    Unknown fields are ignored (Zeek scripts add fields such as `community_id`); a record is
    rejected when a required field is missing, a value has the wrong type or range, a number
    is not finite, or `ts` lies outside the plausible window (`plausible` at `now`).

    With `plausible=OFFLINE_FILES` (a file handed in, not a live stream) there is no
    window: a `ts` that counts seconds from the start of the capture (`1011.708279`, as many
    published captures have) is read as that many seconds after 1970-01-01.
    """
    plausible = plausible or PlausibleTime()
    frame = _typed(_source_strings(strings))
    reasons = [
        *_missing_or_mistyped(),
        *_implausible(plausible, *plausible.bounds(now)),
        *_malformed_text(),
        *_out_of_range(),
    ]
    frame = frame.with_columns(
        pl.concat_str(reasons, separator="; ", ignore_nulls=True).alias("error")
    ).with_columns(
        pl.when(pl.col("error") == "").then(None).otherwise(pl.col("error")).alias("error")
    )
    flows = frame.filter(pl.col("error").is_null()).select([*FLOW_COLUMNS, "position"])
    rejects = frame.filter(pl.col("error").is_not_null()).select(
        pl.col("position").cast(pl.Int64), pl.col("raw").cast(pl.Binary), pl.col("error")
    )
    return ParseResult(flows=flows, rejects=rejects.cast(REJECT_SCHEMA))  # type: ignore[arg-type]


def _s(c: str) -> pl.Expr:
    """A canonical column's value as the record gave it (a string, or null)."""
    return pl.col(f"_s_{c}")


def _source_strings(strings: pl.DataFrame) -> pl.DataFrame:
    """`position`, `raw` and every canonical column's given string as `_s_<column>`."""
    present = {
        ZEEK_TO_CANONICAL[name]: pl.col(name).cast(pl.String)
        for name in strings.columns
        if name in ZEEK_TO_CANONICAL
    }
    return strings.select(
        pl.col("position"),
        pl.col("raw"),
        *[(present.get(c, pl.lit(None, dtype=pl.String))).alias(f"_s_{c}") for c in FLOW_COLUMNS],
    )


def _typed(src: pl.DataFrame) -> pl.DataFrame:
    """Every canonical column cast from its string (null where it does not parse), the
    addresses canonicalised (`_given_*` keeps what was given, `_why_*` why it is refused)."""
    # Zeek writes epoch seconds; the ISO formats are tried only when some ts is not one.
    src = src.with_columns(_parse_epoch(_s("ts")).alias("_epoch_ts"))
    epoch_ts = pl.col("_epoch_ts")
    all_epoch = src.select((epoch_ts.is_null() & _s("ts").is_not_null()).any()).item() is False
    typed: list[pl.Expr] = []
    for c in FLOW_COLUMNS:
        if c == "ts":
            expr = epoch_ts if all_epoch else pl.coalesce(epoch_ts, _parse_iso_ts(_s(c)))
        elif c in INTEGER_COLUMNS:
            expr = _s(c).str.strip_chars().cast(FLOW_SCHEMA[c], strict=False)
        elif c == "duration":
            expr = _s(c).str.strip_chars().cast(pl.Float64, strict=False)
        elif c in BOOLEAN_COLUMNS:
            expr = _parse_bool(_s(c).str.strip_chars())
        elif c == "tunnel_parents":
            expr = _parse_set(_s(c))
        elif c == "label":
            expr = _normalize_label(_s(c))
        elif c in ("uid", "orig_h", "resp_h"):
            expr = _s(c).str.strip_chars()
        else:
            expr = _text_or_null(_s(c))
        typed.append(expr.cast(FLOW_SCHEMA[c]).alias(c))
    frame = src.with_columns(typed)
    for c in ("orig_h", "resp_h"):
        frame = frame.with_columns(pl.col(c).alias(f"_given_{c}"))
        frame = _canonical_addresses(frame, c)
    return frame


def _missing_or_mistyped() -> list[pl.Expr]:
    """A required field missing; a value given that does not parse as its type."""
    reasons = []
    for c in REQUIRED_COLUMNS:
        zeek = CANONICAL_TO_ZEEK[c]
        missing = _s(c).is_null() | (_s(c).str.strip_chars().is_in(["", "-"]))
        reasons.append(pl.when(missing).then(pl.lit(f"missing {zeek}")))
    for c in FLOW_COLUMNS:
        if c in ("tunnel_parents", "label", "detailed_label", "capture", "orig_h", "resp_h"):
            continue  # addresses: their own reason below
        zeek = CANONICAL_TO_ZEEK[c]
        given = _s(c).is_not_null() & ~_s(c).str.strip_chars().is_in(["", "-"])
        reasons.append(
            pl.when(given & pl.col(c).is_null()).then(
                pl.format("wrong type for {}: {}", pl.lit(zeek), _s(c).str.slice(0, 40))
            )
        )
    return reasons


def _implausible(plausible: PlausibleTime, low: datetime, high: datetime) -> list[pl.Expr]:
    """A duration that is not finite; a ts outside the plausible window (when enforced)."""
    outside = (pl.col("ts") < low) | (pl.col("ts") > high) if plausible.enforced else pl.lit(False)
    return [
        pl.when(pl.col("duration").is_not_null() & ~pl.col("duration").is_finite()).then(
            pl.format("non-finite duration: {}", _s("duration").str.slice(0, 40))
        ),
        pl.when(outside).then(
            pl.format(
                "ts outside the plausible window: {} not in [{}, {}]",
                _s("ts").str.slice(0, 40),
                pl.lit(f"{low:%Y-%m-%d}"),
                pl.lit(f"{high:%Y-%m-%dT%H:%M:%SZ}"),
            )
        ),
    ]


def _malformed_text() -> list[pl.Expr]:
    """JSON where Zeek writes a string, unreadable addresses, uids and texts too long or
    carrying control characters."""
    reasons = [
        # A JSON array or object where Zeek writes a string (read back as its JSON text).
        pl.when(pl.col(c).str.starts_with("[") | pl.col(c).str.starts_with("{")).then(
            pl.format("wrong type for {}: {}", pl.lit(CANONICAL_TO_ZEEK[c]), _s(c).str.slice(0, 40))
        )
        for c in _TEXT_COLUMNS
    ]
    reasons += [
        pl.when(pl.col(f"_why_{c}").is_not_null()).then(
            pl.format(
                "wrong type for {}: {} ({})",
                pl.lit(CANONICAL_TO_ZEEK[c]),
                pl.col(f"_given_{c}").str.slice(0, 48),
                pl.col(f"_why_{c}"),
            )
        )
        for c in ("orig_h", "resp_h")
    ]
    reasons += [
        pl.when(pl.col("uid").str.len_chars() > MAX_UID_CHARS).then(
            pl.format("uid longer than {} characters", pl.lit(MAX_UID_CHARS))
        ),
        pl.when(pl.col("uid").str.contains(_UNPRINTABLE)).then(
            pl.lit("uid has control or bidirectional-format characters")
        ),
    ]
    reasons += [
        pl.when(pl.col(c).str.len_chars() > MAX_TEXT_CHARS).then(
            pl.lit(f"{CANONICAL_TO_ZEEK[c]} longer than {MAX_TEXT_CHARS} characters")
        )
        for c in _TEXT_COLUMNS
        if c != "uid"
    ]
    return reasons


def _out_of_range() -> list[pl.Expr]:
    """Negative counts and sizes; ports outside 0..65535."""
    reasons = [pl.when(pl.col(c) < 0).then(pl.lit(f"negative {c}")) for c in NON_NEGATIVE_COLUMNS]
    reasons += [
        pl.when((pl.col(c) < 0) | (pl.col(c) > MAX_PORT)).then(
            pl.lit(f"{CANONICAL_TO_ZEEK[c]} out of range")
        )
        for c in PORT_COLUMNS
    ]
    return reasons
