"""Workers inside each VPC for real: the EdgeExecutor beside the default executor, an Edge worker per VPC queue
(devstack/run/edge_e2e.py), one stopped by SIGTERM while it runs a batch and started again. Loopback 127.42.14.x;
like the other server-starting tests, run under `flock /tmp/ec2audit-e2e.lock`."""
import pytest

from devstack.procs import PROJECT
from devstack.run import edge_e2e

pytestmark = pytest.mark.needs_edge_provider


@pytest.mark.timeout(420)
def test_each_batch_runs_in_its_vpc_and_a_stopped_worker_s_batches_wait_and_resume():
    result = edge_e2e.run(PROJECT / ".local" / "edge-test")
    assert edge_e2e.problems(result) == [], result
