"""Which hosts a run checks: discovery from EC2, and the batches the verify tasks are mapped over."""
