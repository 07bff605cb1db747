"""Development harness: the bundled Kafka-protocol broker, a local MLflow server and replaying Zeek logs into Kafka. Production code does not import it."""
