"""What a run is told: the params' schema, the params records, connection ids, the deployment's queues. Imports core only."""
