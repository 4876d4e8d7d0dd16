-- Second database on the same cluster: MLflow's backend store (Dagster uses POSTGRES_DB).
CREATE DATABASE mlflow;
