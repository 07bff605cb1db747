"""Kafka clients behind one interface (kafka-python or confluent-kafka), offsets and consumer lag."""

# The topic Zeek conn records arrive on unless NIDS_KAFKA_TOPIC names another.
DEFAULT_TOPIC = "zeek.conn"
