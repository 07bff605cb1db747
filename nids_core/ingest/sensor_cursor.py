"""The Kafka sensor's cursor: its topic and, per partition, the generation of its run keys
and its lane of requested ranges, as JSON.

What cannot be used (a cursor that is not this version's JSON or is another topic's, an
entry that is not a batch, an empty or impossible range) is dropped with a reason, never
fatal. A partition whose generation is lost that way is given a fresh one by the sensor
(see `fresh_generation`), so no run key of the past is reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from nids_core.ingest.planning import RequestedBatch
from nids_core.kafka.offsets import OffsetRange

CURSOR_VERSION = 2


@dataclass
class SensorCursor:
    lanes: dict[int, list[RequestedBatch]] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)
    # What was dropped while loading, and why (the sensor logs it once).
    repairs: list[str] = field(default_factory=list)


def _batch(topic: str, partition: int, raw: object) -> RequestedBatch:
    """One lane entry; ValueError for what is not a batch or not a range (OffsetRange
    refuses an empty or negative one)."""
    if not isinstance(raw, dict):
        raise ValueError(f"not a batch: {raw!r:.80}")
    batch = RequestedBatch(
        OffsetRange(topic, partition, int(raw["start"]), int(raw["end"])),
        attempt=int(raw.get("attempt", 1)),
        requested_at=float(raw.get("requested_at", 0.0)),
        generation=int(raw.get("generation", 0)),
    )
    if batch.generation < 0:
        raise ValueError(f"impossible batch {raw!r:.80}")
    return batch


def load_cursor(raw: str | None, topic: str) -> SensorCursor:
    """Read the cursor of the sensor reading `topic`, repairing what cannot be used (see
    the module doc)."""
    cursor = SensorCursor()
    if not raw:
        return cursor
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != CURSOR_VERSION:
            raise ValueError(f"not a version-{CURSOR_VERSION} cursor")
        if doc.get("topic") != topic:
            raise ValueError(f"a cursor of topic {doc.get('topic')!r:.60}, not {topic!r}")
        partitions = dict(doc["partitions"])
    except (ValueError, KeyError, TypeError) as exc:
        cursor.repairs.append(f"cursor unreadable ({exc}); planning every partition afresh")
        return cursor
    for key, entry in partitions.items():
        try:
            p, generation, raw_lane = int(key), int(entry["generation"]), list(entry["lane"])
        except (KeyError, TypeError, ValueError) as exc:
            cursor.repairs.append(f"entry {key!r:.40} unreadable ({exc!r:.60}); dropped")
            continue
        cursor.lanes[p] = _lane(topic, p, raw_lane, cursor.repairs)
        cursor.generations[p] = max([generation, *(b.generation for b in cursor.lanes[p])])
    return cursor


def _lane(topic: str, partition: int, raw_lane: list, repairs: list[str]) -> list[RequestedBatch]:
    lane = []
    for item in raw_lane:
        try:
            lane.append(_batch(topic, partition, item))
        except (KeyError, TypeError, ValueError) as exc:
            repairs.append(f"partition {partition}: {exc}; dropped")
    return lane


def dump_cursor(
    topic: str, lanes: dict[int, list[RequestedBatch]], generations: dict[int, int]
) -> str:
    partitions = sorted(set(lanes) | set(generations))
    return json.dumps(
        {
            "version": CURSOR_VERSION,
            "topic": topic,
            "partitions": {
                str(p): {
                    "generation": generations.get(p, 0),
                    "lane": [b.to_json() for b in lanes.get(p, [])],
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
