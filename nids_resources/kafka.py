"""Kafka connection settings as a Dagster resource."""

from dagster import ConfigurableResource
from pydantic import ValidationInfo, field_validator, model_validator

from nids_core.kafka import DEFAULT_TOPIC
from nids_core.kafka.log import (
    KAFKA_CLIENTS,
    FlowLogClient,
    KafkaSettings,
    open_client,
)
from nids_core.zeek.json_log import DEFAULT_MAX_MESSAGE_BYTES
from nids_resources.run_worker import TagsRunWorker
from nids_resources.settings import setting

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


class KafkaResource(TagsRunWorker, ConfigurableResource):
    """Where Zeek flow records arrive: brokers, topic, consumer group, client and security."""

    bootstrap_servers: str = setting(
        "127.0.0.1:9092",
        env="NIDS_KAFKA_BOOTSTRAP",
        description="Kafka bootstrap servers (host:port, comma-separated)",
    )
    topic: str = setting(
        DEFAULT_TOPIC, env="NIDS_KAFKA_TOPIC", description="Topic with Zeek conn records (JSON)"
    )
    group_id: str = setting(
        "nids-etl",
        env="NIDS_KAFKA_GROUP",
        description="Consumer group whose committed offsets track ingestion",
    )
    client: str = setting(
        "kafka-python",
        env="NIDS_KAFKA_CLIENT",
        description="Kafka client: kafka-python or confluent",
    )
    max_batch_records: int = setting(
        100_000, env="NIDS_KAFKA_MAX_BATCH_RECORDS", description="Most records per ingest run", ge=1
    )
    max_message_bytes: int = setting(
        DEFAULT_MAX_MESSAGE_BYTES,
        env="NIDS_KAFKA_MAX_MESSAGE_BYTES",
        description="Larger messages are quarantined",
        ge=1024,
    )
    read_timeout_s: float = setting(
        60.0,
        env="NIDS_KAFKA_READ_TIMEOUT_S",
        description="Deadline in seconds to read one batch's offset range",
        gt=0,
    )
    request_timeout_s: float = setting(
        10.0, env="NIDS_KAFKA_REQUEST_TIMEOUT_S", description="Broker request timeout (s)", gt=0
    )
    security_protocol: str = setting(
        "PLAINTEXT",
        env="NIDS_KAFKA_SECURITY_PROTOCOL",
        description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
    )
    sasl_mechanism: str | None = setting(
        None,
        env="NIDS_KAFKA_SASL_MECHANISM",
        description="SASL mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)",
    )
    sasl_username: str | None = setting(
        None, env="NIDS_KAFKA_SASL_USERNAME", description="SASL user name"
    )
    sasl_password: str | None = setting(
        None, env="NIDS_KAFKA_SASL_PASSWORD", description="SASL password", secret=True
    )
    ssl_cafile: str | None = setting(
        None, env="NIDS_KAFKA_SSL_CAFILE", description="CA bundle for SSL"
    )

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{server!r} is not host:port")
        return value

    @field_validator("client", "security_protocol")
    @classmethod
    def _one_of(cls, value: str, info: ValidationInfo) -> str:
        choices = KAFKA_CLIENTS if info.field_name == "client" else SECURITY_PROTOCOLS
        if value not in choices:
            raise ValueError(f"is not one of: {', '.join(choices)}")
        return value

    @model_validator(mode="after")
    def _sasl_needs_mechanism(self) -> "KafkaResource":
        if self.security_protocol.startswith("SASL") and not self.sasl_mechanism:
            raise ValueError(
                f"NIDS_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                "NIDS_KAFKA_SASL_MECHANISM"
            )
        return self

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
