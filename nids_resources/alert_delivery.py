"""Deliver the alerts waiting in the outbox to every configured sink, each sink on its own:
operational alerts and findings to the webhook, findings to the Kafka topic and to NDJSON
files. Called by `alert_delivery_sensor` (every 10 s, retries included) and at the end of
the `alerts` step (so an in-process run delivers too); the outbox's claims keep the two
from sending one row at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from nids_core.detection.delivery import FileSink, KafkaSink
from nids_core.detection.triage import FINDING_KIND
from nids_core.serving.outbox import Delivery
from nids_core.serving.webhook import post_alert
from nids_resources.kafka import KafkaResource
from nids_resources.serving import ServingSettingsResource


@dataclass
class DeliveryReport:
    per_sink: dict[str, Delivery] = field(default_factory=dict)

    @property
    def errors(self) -> list[str]:
        return [f"{s}: {e}" for s, d in self.per_sink.items() for e in d.errors]

    def summary(self) -> str:
        """Per sink: delivered and failed now, and what waits in the outbox (all sinks)."""
        parts = [
            f"{s}: {d.delivered} delivered, {d.failed} failed, {d.pending} waiting"
            for s, d in self.per_sink.items()
        ]
        return "; ".join(parts) if parts else "no sink configured: alerts are kept"


def _drain(outbox, send, kind: str) -> Delivery:
    """Deliver every due row of one sink, a claim of 100 at a time, until none is due or
    the sink fails (it then waits for its backoff)."""
    total = Delivery(0, 0, 0, [])
    while True:
        d = outbox.deliver_due(send, kinds=[kind])
        total = Delivery(
            total.delivered + d.delivered,
            total.failed + d.failed,
            d.pending,
            total.errors + d.errors,
        )
        if d.failed or d.delivered < DELIVERY_CLAIM:
            return total


DELIVERY_CLAIM = 100  # rows per claim (the outbox's default limit)


def deliver_alerts(serving: ServingSettingsResource, kafka: KafkaResource | None) -> DeliveryReport:
    outbox = serving.outbox()
    report = DeliveryReport()
    if serving.alert_webhook_url:
        url = serving.alert_webhook_url
        # Operational alerts (every kind that is not a finding) and the webhook's findings.
        report.per_sink["webhook"] = outbox.deliver_due(
            lambda payload: post_alert(url, payload),
            kinds=[FINDING_KIND + "webhook", f"!{FINDING_KIND}*"],
        )
    if serving.alerts_folder():
        sink = FileSink(serving.alerts_folder())
        report.per_sink["file"] = _drain(outbox, sink.send, FINDING_KIND + "file")
    topic = serving.kafka_alerts_topic()
    if topic and kafka is not None:
        producer = None

        def send(payload: dict) -> None:
            nonlocal producer
            if producer is None:  # opened only when something is due
                from nids_core.kafka.log import open_producer

                producer = open_producer(kafka.client, kafka.settings())
            KafkaSink(producer, topic).send(payload)

        try:
            report.per_sink["kafka"] = _drain(outbox, send, FINDING_KIND + "kafka")
        finally:
            if producer is not None:
                producer.close()
    return report
