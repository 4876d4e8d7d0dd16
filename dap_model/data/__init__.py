"""Data formats: sharded sample stores and their Parquet manifests."""
