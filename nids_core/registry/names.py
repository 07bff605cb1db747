"""Names of the registered model and its aliases (no imports: cheap for any process)."""

MODEL_NAME = "nids-gnn"
CHALLENGER = "challenger"
CHAMPION = "champion"
