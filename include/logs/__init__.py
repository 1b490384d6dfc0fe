"""The AWS side of delivery: CloudWatch Logs streams, the run's shared stream index, the canary search."""
