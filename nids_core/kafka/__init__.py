"""Kafka clients behind one interface (kafka-python or confluent-kafka), offsets and consumer lag."""
