-- MLflow's backend store lives beside Dagster's storage on the same server.
CREATE DATABASE mlflow OWNER nids;
-- The hot store's DuckLake catalog (its data files are on S3).
CREATE DATABASE nids_hot OWNER nids;
