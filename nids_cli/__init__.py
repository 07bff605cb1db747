"""The `nids` command line: ingest until idle, label flows, evaluate models, replay, the demo, and the in-process driver they share."""
