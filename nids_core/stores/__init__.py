"""The hot DuckDB table, the cold Parquet store (landing zone and daily partitions) and moving data between them."""
