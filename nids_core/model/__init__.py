"""The flow-graph model: features, graph building, the GNN, the flow-only trees, the served hybrid and training."""
