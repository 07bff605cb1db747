"""Kafka connection settings as a Dagster resource."""

from dagster import ConfigurableResource
from pydantic import Field

from nids_core.kafka.log import (
    FlowLogClient,
    KafkaSettings,
    open_client,
)
from nids_core.zeek.json_log import DEFAULT_MAX_MESSAGE_BYTES
from nids_resources.run_worker import TagsRunWorker


class KafkaResource(TagsRunWorker, ConfigurableResource):
    """Where Zeek flow records arrive: brokers, topic, consumer group, client and security."""

    bootstrap_servers: str = Field(description="Comma-separated host:port list of brokers.")
    topic: str = Field(default="zeek.conn", description="Topic carrying Zeek conn records.")
    group_id: str = Field(
        default="nids-etl", description="Consumer group whose offsets track ingestion."
    )
    client: str = Field(
        default="kafka-python", description="kafka-python or confluent (librdkafka)."
    )
    max_batch_records: int = Field(default=50_000, description="Most records one ingest run reads.")
    max_message_bytes: int = Field(
        default=DEFAULT_MAX_MESSAGE_BYTES, description="Larger messages are quarantined."
    )
    read_timeout_s: float = Field(default=60.0, description="Deadline to read one batch's range.")
    request_timeout_s: float = Field(default=10.0, description="Broker request timeout.")
    security_protocol: str = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: str | None = Field(
        default=None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512."
    )
    sasl_username: str | None = Field(default=None)
    sasl_password: str | None = Field(default=None, description="From the environment only.")
    ssl_cafile: str | None = Field(default=None, description="CA bundle for SSL.")

    def settings(self) -> KafkaSettings:
        return KafkaSettings(
            bootstrap_servers=self.bootstrap_servers,
            group_id=self.group_id,
            security_protocol=self.security_protocol,
            sasl_mechanism=self.sasl_mechanism,
            sasl_username=self.sasl_username,
            sasl_password=self.sasl_password,
            ssl_cafile=self.ssl_cafile,
            request_timeout_s=self.request_timeout_s,
        )

    def open_client(self) -> FlowLogClient:
        return open_client(self.client, self.settings())
