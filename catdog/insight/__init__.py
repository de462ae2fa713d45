"""What is wrong with the data: near-duplicates and leakage across splits."""
