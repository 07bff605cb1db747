"""Model versions in the MLflow registry: training runs, aliases (champion, challenger) and loading."""
