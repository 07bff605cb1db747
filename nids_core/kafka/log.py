"""One small interface over a Kafka topic's partitions for the ingest path.

The ingest path needs only five things from Kafka: the partitions, the consumer group's
committed offsets, the watermarks, a bounded read of one offset range, and a commit.
Two implementations sit behind it, chosen by configuration: kafka-python (default) and
confluent-kafka (librdkafka) for high rates. Both are written for real Apache Kafka and
tested against the bundled Kafka-protocol broker.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nids_core.kafka.offsets import OffsetRange

KAFKA_CLIENTS: tuple[str, ...] = ("kafka-python", "confluent")


class KafkaUnavailable(RuntimeError):
    """The brokers could not be reached (or refused the request)."""


class TopicNotFound(RuntimeError):
    """The topic does not exist on the cluster."""


class RangeReadTimeout(RuntimeError):
    """A range could not be read completely before the deadline."""


@dataclass(frozen=True)
class KafkaSettings:
    """Connection settings shared by both clients; security passes through unchanged."""

    bootstrap_servers: str
    group_id: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    request_timeout_s: float = 10.0
    client_id: str = "nids"
    # Producers: a message the broker has not acknowledged within this long fails (and
    # `flush` with it) instead of being retried for minutes while the caller waits.
    delivery_timeout_s: float = 20.0


@dataclass(frozen=True)
class Watermarks:
    low: int
    high: int


# Records per poll while reading a range: kafka-python decodes polls of this size faster
# than one poll of everything.
READ_POLL_RECORDS = 10_000


@dataclass
class RecordRange:
    """The messages read from an offset range: their offsets and values."""

    span: OffsetRange
    offsets: list[int]
    values: list[bytes | None]

    def __len__(self) -> int:
        return len(self.offsets)


class FlowLogClient(ABC):
    """Committed offsets, high watermark, read a range, commit."""

    @abstractmethod
    def partitions(self, topic: str) -> list[int]: ...

    @abstractmethod
    def committed(self, topic: str, partitions: Iterable[int]) -> dict[int, int | None]: ...

    @abstractmethod
    def watermarks(self, topic: str, partitions: Iterable[int]) -> dict[int, Watermarks]: ...

    @abstractmethod
    def read_range(self, span: OffsetRange, timeout_s: float = 60.0) -> RecordRange: ...

    @abstractmethod
    def commit(self, topic: str, partition: int, offset: int) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> FlowLogClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FlowLogProducer(ABC):
    """Writes message values (keyed) to a topic; used by `nids replay` and the tests."""

    @abstractmethod
    def send_many(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None: ...

    @abstractmethod
    def flush(self) -> None:
        """Wait for every message sent; KafkaUnavailable if any was not acknowledged."""

    @property
    @abstractmethod
    def acknowledged(self) -> int:
        """Messages the broker has acknowledged (acks=all) so far."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> FlowLogProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- kafka-python


def _security_options(s: KafkaSettings, names: dict[str, str]) -> dict[str, Any]:
    """Security settings under one client's option names; unset values are left out."""
    values = {
        "protocol": s.security_protocol,
        "mechanism": s.sasl_mechanism or None,
        "username": s.sasl_username,
        "password": s.sasl_password,
        "cafile": s.ssl_cafile or None,
    }
    return {names[k]: v for k, v in values.items() if v is not None}


_KAFKA_PYTHON_SECURITY = {
    "protocol": "security_protocol",
    "mechanism": "sasl_mechanism",
    "username": "sasl_plain_username",
    "password": "sasl_plain_password",
    "cafile": "ssl_cafile",
}
_CONFLUENT_SECURITY = {
    "protocol": "security.protocol",
    "mechanism": "sasl.mechanism",
    "username": "sasl.username",
    "password": "sasl.password",
    "cafile": "ssl.ca.location",
}


def _kafka_python_security(s: KafkaSettings) -> dict[str, Any]:
    return _security_options(s, _KAFKA_PYTHON_SECURITY)


class KafkaPythonClient(FlowLogClient):
    def __init__(self, settings: KafkaSettings):
        from kafka import KafkaConsumer
        from kafka.errors import KafkaConfigurationError, KafkaError

        self._settings = settings
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                group_id=settings.group_id,
                client_id=settings.client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                request_timeout_ms=int(settings.request_timeout_s * 1000) + 1000,
                bootstrap_timeout_ms=int(settings.request_timeout_s * 1000),
                max_poll_records=100_000,
                fetch_max_bytes=64 * 1024 * 1024,
                max_partition_fetch_bytes=16 * 1024 * 1024,
                **_kafka_python_security(settings),
            )
        except KafkaConfigurationError:
            raise
        except KafkaError as exc:
            raise KafkaUnavailable(
                f"cannot reach Kafka at {settings.bootstrap_servers}: {exc!r}"
            ) from exc

    def _tp(self, topic: str, partition: int) -> Any:
        from kafka import TopicPartition

        return TopicPartition(topic, partition)

    def partitions(self, topic: str) -> list[int]:
        from kafka.errors import KafkaError

        try:
            self._consumer.topics()  # forces a metadata refresh
            parts = self._consumer.partitions_for_topic(topic)
        except KafkaError as exc:
            raise KafkaUnavailable(f"metadata request failed: {exc!r}") from exc
        if not parts:
            raise TopicNotFound(f"topic {topic!r} does not exist")
        return sorted(parts)

    def committed(self, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        return {p: self._consumer.committed(self._tp(topic, p)) for p in partitions}

    def watermarks(self, topic: str, partitions: Iterable[int]) -> dict[int, Watermarks]:
        tps = [self._tp(topic, p) for p in partitions]
        low = self._consumer.beginning_offsets(tps)
        listed = self._consumer.end_offsets(tps)
        result: dict[int, Watermarks] = {}
        for tp in tps:
            # ListOffsets(latest) is the true end on Apache Kafka, but some Kafka-protocol
            # brokers answer the last record batch's base offset + 1. The high watermark of
            # a fetch response is right on both, so fetch the tail once and take the max.
            self._consumer.assign([tp])
            self._consumer.seek(tp, max(low[tp], listed[tp] - 1))
            deadline = time.monotonic() + self._settings.request_timeout_s
            while self._consumer.highwater(tp) is None and time.monotonic() < deadline:
                self._consumer.poll(timeout_ms=200, max_records=1, update_offsets=False)
            fetched = self._consumer.highwater(tp)
            high = max(listed[tp], fetched if fetched is not None else listed[tp])
            result[tp.partition] = Watermarks(low=low[tp], high=high)
        self._consumer.assign([])
        return result

    def read_range(self, span: OffsetRange, timeout_s: float = 60.0) -> RecordRange:
        topic, partition, start, end = span.topic, span.partition, span.start, span.end
        tp = self._tp(topic, partition)
        self._consumer.assign([tp])
        self._consumer.seek(tp, start)
        offsets: list[int] = []
        values: list[bytes | None] = []
        deadline = time.monotonic() + timeout_s
        while self._consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise RangeReadTimeout(
                    f"read {len(offsets)} records of {topic}[{partition}] [{start}, {end}) "
                    f"before the {timeout_s:.0f} s deadline; position "
                    f"{self._consumer.position(tp)}"
                )
            for records in self._consumer.poll(
                timeout_ms=500, max_records=READ_POLL_RECORDS
            ).values():
                for r in records:
                    if r.offset < end:
                        offsets.append(r.offset)
                        values.append(r.value)
        self._consumer.assign([])
        return RecordRange(span, offsets, values)

    def commit(self, topic: str, partition: int, offset: int) -> None:
        from kafka.structs import OffsetAndMetadata

        self._consumer.commit({self._tp(topic, partition): OffsetAndMetadata(offset, "", -1)})

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaPythonProducer(FlowLogProducer):
    def __init__(self, settings: KafkaSettings):
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        try:
            self._producer = KafkaProducer(
                bootstrap_servers=settings.bootstrap_servers.split(","),
                client_id=settings.client_id,
                linger_ms=20,
                batch_size=512 * 1024,
                acks="all",
                # A broker gone for this long fails the messages (and `flush`), instead of
                # the producer retrying them for minutes while the caller believes them sent.
                request_timeout_ms=int(min(10, settings.delivery_timeout_s) * 1000),
                delivery_timeout_ms=int(settings.delivery_timeout_s * 1000) + 20,
                max_block_ms=int(settings.delivery_timeout_s * 1000),
                **_kafka_python_security(settings),
            )
        except KafkaError as exc:
            raise KafkaUnavailable(
                f"cannot reach Kafka at {settings.bootstrap_servers}: {exc!r}"
            ) from exc

        self._acked = 0
        self._errors: list[str] = []

    def _ok(self, _metadata: Any) -> None:
        self._acked += 1

    def _failed(self, exc: BaseException) -> None:
        self._errors.append(repr(exc))

    @property
    def acknowledged(self) -> int:
        return self._acked

    def send_many(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        from kafka.errors import KafkaError

        if self._errors:
            raise KafkaUnavailable(f"earlier messages were not delivered: {self._errors[:3]}")
        try:
            for key, value in items:
                future = self._producer.send(topic, key=key, value=value)
                future.add_callback(self._ok)
                future.add_errback(self._failed)
        except KafkaError as exc:
            raise KafkaUnavailable(f"send failed: {exc!r}") from exc

    def flush(self, timeout_s: float = 30) -> None:
        from kafka.errors import KafkaError

        try:
            self._producer.flush(timeout=timeout_s)
        except KafkaError as exc:
            raise KafkaUnavailable(
                f"messages undelivered after {timeout_s:.0f} s: {exc!r}"
            ) from exc
        if self._errors:
            raise KafkaUnavailable(
                f"{len(self._errors)} messages undelivered; errors: {self._errors[:3]}"
            )

    def close(self) -> None:
        self._producer.close(timeout=5)


# --------------------------------------------------------------------------- confluent-kafka


def _confluent_config(s: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": s.bootstrap_servers,
        "client.id": s.client_id,
        "socket.timeout.ms": int(s.request_timeout_s * 1000),
        **_security_options(s, _CONFLUENT_SECURITY),
    }


class ConfluentClient(FlowLogClient):
    def __init__(self, settings: KafkaSettings):
        from confluent_kafka import Consumer

        self._settings = settings
        self._consumer = Consumer(
            {
                **_confluent_config(settings),
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": True,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                "queued.max.messages.kbytes": 256 * 1024,
                # Ranges are read to a known end, never waited on: a fetch the broker holds
                # for new records (500 ms by default) only delays the next assignment on
                # this consumer (the range after a watermark probe waited it out).
                "fetch.wait.max.ms": 10,
            }
        )

    def _timeout(self) -> float:
        return self._settings.request_timeout_s

    def partitions(self, topic: str) -> list[int]:
        from confluent_kafka import KafkaException

        try:
            meta = self._consumer.list_topics(topic, timeout=self._timeout())
        except KafkaException as exc:
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self._settings.bootstrap_servers}: {exc}"
            ) from exc
        t = meta.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            raise TopicNotFound(f"topic {topic!r} does not exist")
        return sorted(t.partitions)

    def committed(self, topic: str, partitions: Iterable[int]) -> dict[int, int | None]:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            tps = self._consumer.committed(
                [TopicPartition(topic, p) for p in partitions], timeout=self._timeout()
            )
        except KafkaException as exc:
            raise KafkaUnavailable(f"committed-offsets request failed: {exc}") from exc
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in tps}

    def watermarks(self, topic: str, partitions: Iterable[int]) -> dict[int, Watermarks]:
        from confluent_kafka import KafkaError, TopicPartition

        result: dict[int, Watermarks] = {}
        for p in partitions:
            tp = TopicPartition(topic, p)
            low, listed = self._consumer.get_watermark_offsets(tp, timeout=self._timeout())
            # See KafkaPythonClient.watermarks: the fetch response's high watermark is exact.
            self._consumer.assign([TopicPartition(topic, p, max(low, listed - 1))])
            deadline = time.monotonic() + self._timeout()
            seen = False
            while not seen and time.monotonic() < deadline:
                for m in self._consumer.consume(num_messages=1, timeout=0.2):
                    err = m.error()
                    if err is None or err.code() == KafkaError._PARTITION_EOF:
                        seen = True
            _, cached = self._consumer.get_watermark_offsets(tp, cached=True)
            result[p] = Watermarks(low=low, high=max(listed, cached if cached >= 0 else listed))
        self._consumer.unassign()
        return result

    def read_range(self, span: OffsetRange, timeout_s: float = 60.0) -> RecordRange:
        topic, partition, start, end = span.topic, span.partition, span.start, span.end
        from confluent_kafka import KafkaError, KafkaException, TopicPartition

        self._consumer.assign([TopicPartition(topic, partition, start)])
        offsets: list[int] = []
        values: list[bytes | None] = []
        position = start
        deadline = time.monotonic() + timeout_s
        while position < end:
            if time.monotonic() > deadline:
                raise RangeReadTimeout(
                    f"read {len(offsets)} records of {topic}[{partition}] [{start}, {end}) "
                    f"before the {timeout_s:.0f} s deadline; position {position}"
                )
            want = max(1, min(READ_POLL_RECORDS, end - position))
            for m in self._consumer.consume(num_messages=want, timeout=0.5):
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        position = max(position, m.offset())
                        continue
                    raise KafkaException(err)
                off = m.offset()
                if off < end:
                    offsets.append(off)
                    values.append(m.value())
                position = max(position, off + 1)
        self._consumer.unassign()
        return RecordRange(span, offsets, values)

    def commit(self, topic: str, partition: int, offset: int) -> None:
        from confluent_kafka import TopicPartition

        self._consumer.commit(
            offsets=[TopicPartition(topic, partition, offset)], asynchronous=False
        )

    def close(self) -> None:
        self._consumer.close()


class ConfluentProducer(FlowLogProducer):
    def __init__(self, settings: KafkaSettings):
        from confluent_kafka import Producer

        self._producer = Producer(
            {
                **_confluent_config(settings),
                "linger.ms": 20,
                "acks": "all",
                "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
                "enable.idempotence": True,
                "queue.buffering.max.messages": 1_000_000,
                "queue.buffering.max.kbytes": 1024 * 1024,
            }
        )
        self._errors: list[str] = []
        self._acked = 0

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))
        else:
            self._acked += 1

    @property
    def acknowledged(self) -> int:
        return self._acked

    def send_many(self, topic: str, items: Sequence[tuple[bytes | None, bytes]]) -> None:
        for key, value in items:
            while True:
                try:
                    self._producer.produce(
                        topic, value=value, key=key, on_delivery=self._on_delivery
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
            self._producer.poll(0)

    def flush(self, timeout_s: float = 30) -> None:
        remaining = self._producer.flush(timeout_s)
        if remaining or self._errors:
            raise KafkaUnavailable(f"{remaining} messages undelivered; errors: {self._errors[:3]}")

    def close(self) -> None:
        try:
            self.flush(5 if self._errors else 30)
        finally:
            # Release librdkafka's threads now; a producer left to the garbage collector
            # keeps reconnecting (and logging) after the broker has gone.
            self._producer.close()


def open_client(name: str, settings: KafkaSettings) -> FlowLogClient:
    """The configured consumer-side client."""
    if name == "kafka-python":
        return KafkaPythonClient(settings)
    if name == "confluent":
        return ConfluentClient(settings)
    raise ValueError(f"unknown Kafka client {name!r}: choose one of {', '.join(KAFKA_CLIENTS)}")


def open_producer(name: str, settings: KafkaSettings) -> FlowLogProducer:
    """The configured producer."""
    if name == "kafka-python":
        return KafkaPythonProducer(settings)
    if name == "confluent":
        return ConfluentProducer(settings)
    raise ValueError(f"unknown Kafka client {name!r}: choose one of {', '.join(KAFKA_CLIENTS)}")
