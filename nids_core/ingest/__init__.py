"""One micro-batch from Kafka to the stores: planning offset ranges, parsing and value rules, landing."""
