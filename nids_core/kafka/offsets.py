"""One value for an offset range, from the sensor's plan to the landing file names, the run
config, the commit and the SQL filter over stored rows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OffsetRange:
    """Records [start, end) of one topic partition: what one ingest run reads, lands,
    upserts and commits."""

    topic: str
    partition: int
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.partition < 0 or self.start < 0 or self.end <= self.start:
            raise ValueError(f"not an offset range: {self}")

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}] [{self.start}, {self.end})"

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def name(self) -> str:
        """File stem naming the range (zero-padded, so names sort by offset)."""
        return f"{self.topic}-p{self.partition:05d}-{self.start:020d}-{self.end:020d}"

    def run_key(self, attempt: int = 1, generation: int = 0) -> str:
        """The ingest run key: the range, then `~generation` once offsets were reused (a
        broker that lost its log, a recreated topic) and `#attempt` for a retry."""
        key = f"{self.topic}:{self.partition}:{self.start}-{self.end}"
        if generation:
            key = f"{key}~{generation}"
        return key if attempt == 1 else f"{key}#{attempt}"

    def sql_filter(self) -> tuple[str, dict[str, object]]:
        """A WHERE clause (named parameters) selecting stored rows whose Kafka provenance
        lies in the range."""
        return (
            'topic = $topic AND "partition" = $partition AND "offset" >= $start '
            'AND "offset" < $end',
            {
                "topic": self.topic,
                "partition": self.partition,
                "start": self.start,
                "end": self.end,
            },
        )
