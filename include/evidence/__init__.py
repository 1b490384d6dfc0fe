"""The evidence store: items, run summaries and the day's digest in DynamoDB (append-only records with their hashes)."""
