"""The Kafka sensor's cursor: per partition, the generation of its run keys and its lane of
requested ranges, as JSON.

A cursor written by any earlier version loads: one batch per partition (before lanes), a
lane per partition (before generations were kept apart) and the current form. What cannot
be used is dropped with a reason, never fatal: a range that is empty or impossible (an
earlier version stored `[start, start)` to carry a generation, which stopped every later
tick), an entry that is not a batch, or a cursor that is not JSON at all. A partition whose
generation is lost that way is given a fresh one by the sensor (see `fresh_generation`),
so no run key of the past is reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nids_core.ingest.planning import InFlightBatch

CURSOR_VERSION = 2


@dataclass
class SensorCursor:
    lanes: dict[int, list[InFlightBatch]] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)
    # What was dropped while loading, and why (the sensor logs it once).
    repairs: list[str] = field(default_factory=list)


def _batch(raw: object) -> InFlightBatch:
    if not isinstance(raw, dict):
        raise ValueError(f"not a batch: {raw!r:.80}")
    batch = InFlightBatch(
        start=int(raw["start"]),
        end=int(raw["end"]),
        attempt=int(raw.get("attempt", 1)),
        requested_at=float(raw.get("requested_at", 0.0)),
        generation=int(raw.get("generation", 0)),
    )
    if batch.start < 0 or batch.generation < 0:
        raise ValueError(f"impossible batch {raw!r:.80}")
    return batch


def load_cursor(raw: str | None) -> SensorCursor:
    """Read a cursor of any version, repairing what cannot be used (see the module doc)."""
    cursor = SensorCursor()
    if not raw:
        return cursor
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        cursor.repairs.append(f"cursor unreadable ({exc}); planning every partition afresh")
        return cursor
    partitions = doc.get("partitions", {}) if doc.get("version") == CURSOR_VERSION else doc
    for key, entry in partitions.items():
        try:
            p = int(key)
        except (TypeError, ValueError):
            cursor.repairs.append(f"entry {key!r:.40} is not a partition; dropped")
            continue
        if isinstance(entry, dict) and "lane" in entry:
            generation, raw_lane = entry.get("generation", 0), entry["lane"]
        else:  # before generations were kept apart: a lane, or one batch
            generation, raw_lane = None, entry if isinstance(entry, list) else [entry]
        lane: list[InFlightBatch] = []
        seen_generations = []
        for item in raw_lane if isinstance(raw_lane, list) else [raw_lane]:
            try:
                batch = _batch(item)
            except (KeyError, TypeError, ValueError) as exc:
                cursor.repairs.append(f"partition {p}: {exc}; dropped")
                continue
            seen_generations.append(batch.generation)
            if batch.end <= batch.start:
                cursor.repairs.append(
                    f"partition {p}: empty range [{batch.start}, {batch.end}) dropped "
                    f"(generation {batch.generation} kept)"
                )
                continue
            lane.append(batch)
        cursor.lanes[p] = lane
        try:
            known = int(generation) if generation is not None else None
        except (TypeError, ValueError):
            known = None
        if known is not None or seen_generations:
            cursor.generations[p] = max([known or 0, *seen_generations])
    return cursor


def dump_cursor(lanes: dict[int, list[InFlightBatch]], generations: dict[int, int]) -> str:
    partitions = sorted(set(lanes) | set(generations))
    return json.dumps(
        {
            "version": CURSOR_VERSION,
            "partitions": {
                str(p): {
                    "generation": generations.get(p, 0),
                    "lane": [b.to_json() for b in lanes.get(p, []) if b.start < b.end],
                }
                for p in partitions
            },
        },
        sort_keys=True,
    )


def fresh_generation(newest_run_generation: int | None) -> int:
    """The generation for a partition the cursor knows nothing of: 0 when no run was ever
    requested for it, else one past the newest run's, so no earlier run key is reused (a
    reused key is deduplicated by Dagster: its range would never be read)."""
    return 0 if newest_run_generation is None else newest_run_generation + 1
