"""Replay Zeek conn logs into Kafka as Zeek JSON, as fast as possible or at a steady rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from nids_core.kafka.log import FlowLogProducer
from nids_core.schema import CANONICAL_TO_ZEEK, FLOW_COLUMNS
from nids_core.zeek.files import read_zeek_file

_CHUNK = 5_000


# What a live Zeek sensor does not know: the labels of a labelled capture and its name.
WITHHELD_COLUMNS = ("label", "detailed_label", "capture")


def to_zeek_json(
    flows: pl.DataFrame,
    shift_seconds: float = 0.0,
    uid_suffix: str = "",
    strip_labels: bool = False,
) -> list[bytes]:
    """Canonical flows as Zeek JSON lines (Zeek's field names, `ts` in epoch seconds);
    `strip_labels` leaves out the label, detailed label and capture fields, as a live
    sensor would send them."""
    epoch = pl.col("ts").dt.epoch("us").cast(pl.Float64) / 1e6 + shift_seconds
    out = flows.select(
        [
            (
                epoch if c == "ts" else (pl.col("uid") + uid_suffix if c == "uid" else pl.col(c))
            ).alias(CANONICAL_TO_ZEEK[c])
            for c in FLOW_COLUMNS
            if not (strip_labels and c in WITHHELD_COLUMNS)
        ]
    )
    text = out.write_ndjson()
    return [line.encode() for line in text.splitlines() if line]


@dataclass
class ReplayStats:
    files: int = 0
    sent: int = 0
    rejected: int = 0
    seconds: float = 0.0
    reject_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def _paced(items: list[bytes], rate: float | None) -> Iterable[list[bytes]]:
    step = _CHUNK if not rate else max(1, int(rate / 20))
    t0 = time.monotonic()
    for i in range(0, len(items), step):
        if rate:
            due = t0 + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        yield items[i : i + step]


def replay_files(
    paths: Iterable[str | Path],
    producer: FlowLogProducer,
    topic: str,
    *,
    rate: float | None = None,
    shift_to_now: bool = False,
    repeat: int = 1,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    strip_labels: bool = False,
) -> ReplayStats:
    """Send every valid flow of the files to `topic`, ordered by time within each file.

    shift_to_now: move each capture's timestamps so its last flow happens now.
    repeat > 1: send the files again with the uids made unique (`<uid>-r<n>`), for load tests.
    strip_labels: send them as a live sensor would, without labels or capture names.
    """
    stats = ReplayStats()
    t0 = time.monotonic()
    for path in paths:
        parsed = read_zeek_file(path)
        stats.files += 1
        stats.rejected += parsed.rejects.height
        for reason, n in parsed.rejects.group_by("error").len().iter_rows():
            stats.reject_reasons[reason] = stats.reject_reasons.get(reason, 0) + n
        flows = parsed.flows.sort("ts")
        if flows.is_empty():
            continue
        shift = 0.0
        if shift_to_now:
            shift = datetime.now(UTC).timestamp() - flows["ts"].max().timestamp()
        for r in range(repeat):
            # `limit` counts flows sent, repeats included.
            sending = flows if limit is None else flows.head(max(0, limit - stats.sent))
            if sending.is_empty():
                break
            lines = to_zeek_json(sending, shift, f"-r{r}" if r else "", strip_labels)
            uids = sending["uid"] if not r else sending["uid"] + f"-r{r}"
            keys = [u.encode() for u in uids]
            offset = 0
            for chunk in _paced(lines, rate):
                producer.send_many(
                    topic, list(zip(keys[offset : offset + len(chunk)], chunk, strict=True))
                )
                offset += len(chunk)
                stats.sent += len(chunk)
                if on_progress:
                    on_progress(len(chunk))
        if limit is not None and stats.sent >= limit:
            break
    producer.flush()
    stats.seconds = time.monotonic() - t0
    return stats


def stream_live(
    producer: FlowLogProducer,
    topic: str,
    flows: pl.DataFrame,
    rate: float,
    seconds: float,
    on_sent: Callable[[list[str], float], None],
    stop: Callable[[], bool] = lambda: False,
    strip_labels: bool = False,
) -> int:
    """Send `rate` flows per second for `seconds`, cycling through `flows`, each stamped with
    the time it is sent (as a live sensor would) and given a unique uid; `on_sent(uids, t)`
    is called for every chunk once it is delivered. Returns the number of flows sent."""
    total = int(rate * seconds)
    step = max(1, int(rate / 10))
    if flows.height <= step:
        raise ValueError(f"need more than {step} flows to stream at {rate}/s")
    t0 = time.time()
    for i in range(0, total, step):
        if (delay := t0 + i / rate - time.time()) > 0:
            time.sleep(delay)
        if stop():
            return i
        now = time.time()
        chunk = flows.slice(i % (flows.height - step), min(step, total - i)).with_columns(
            (pl.col("uid") + f"-s{i}").alias("uid"),
            pl.lit(datetime.fromtimestamp(now, UTC)).alias("ts"),
        )
        producer.send_many(
            topic, [(None, v) for v in to_zeek_json(chunk, strip_labels=strip_labels)]
        )
        producer.flush()
        on_sent(chunk["uid"].to_list(), now)
    return total
