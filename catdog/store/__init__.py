"""The OUT store: the Parquet features and their contract, the manifest, the index, generations."""
