-- MLflow's backend store lives beside Dagster's storage on the same server.
CREATE DATABASE mlflow OWNER nids;
