"""The benchmark's methods all work on a tiny simulated fleet (no timing asserted: that is `make bench`)."""
import os
import signal

from devstack import bench
from include.checks.catalogue import HOST_PROBES


def test_every_bench_method_checks_every_host(tmp_path):
    proc, key = bench.start_fleet(tmp_path, 6, latency_ms=0)
    try:
        hosts = bench.addresses(6)
        assert bench.ours(hosts, key) == 6
        assert bench.paramiko_pool(hosts, key, None, workers=3) == 6
        assert bench.paramiko_pool(hosts, key, [p.command for p in HOST_PROBES], workers=3) == 6
        assert bench._paramiko_host(hosts[0], key, [p.command for p in HOST_PROBES])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
