"""How a model is judged: metrics, leave-one-network-out, the promotion gate and file evaluation."""
