"""The benchmark's methods all work on a tiny simulated fleet (no timing asserted: that is `make bench`)."""
import json

from devstack import procs
from devstack.bench import side_by_side as bench
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
        procs.stop_group(proc)


def test_bench_dag_rows_run_this_dag_under_dag_test_and_the_scheduler(tmp_path):
    """The two DAG rows of `make bench` end to end on 6 hosts: a real run each, with the fields the
    PERFORMANCE table reads (phases, CPU, XCom, task RSS, "database is locked" count)."""
    assert bench.main(["--hosts", "6", "--methods", "dag,scheduler", "--latency-ms", "0", "--out", str(tmp_path),
                       "--dag-timeout", "300"]) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())["results"]}
    assert len(rows) == 2
    for row in rows.values():
        assert row["ok"].startswith("success, 6 items, 1 email"), row
        assert {"discover", "verify_batch", "store_evidence", "build_report"} <= set(row["phases_s"])
        assert row["xcom_bytes"] > 0 and row["moto_cpu_s"] >= 0
    scheduler = next(r for m, r in rows.items() if "standalone" in m)
    assert scheduler["database_locked"] == 0 and scheduler["task_peak_rss_mb"] > 0
    assert (tmp_path / "chart.png").exists()



def test_bench_ssm_rows_report_aws_calls_per_host(tmp_path):
    """`ssm` (SsmTransport in this process) and `dag-ssm` (the DAG with transport=ssm) on 7 hosts whose SSM
    agents are the simulator's agent listeners, run by the moto stand-in: every host's whole output comes
    back, and the calls per host are what the transport's design says (one SendCommand per host — its nonce is
    its own — one DescribeInstanceInformation page per ≤ 50 hosts, one GetCommandInvocation per host, one
    ListCommandInvocations per command per poll) — counted by the transport and, the same, by the server."""
    assert bench.main(["--hosts", "7", "--methods", "ssm,dag-ssm", "--latency-ms", "0", "--out", str(tmp_path),
                       "--dag-timeout", "300"]) == 0
    rows = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())["results"]}
    assert len(rows) == 2
    ssm = next(r for m, r in rows.items() if m.startswith("SSM Run Command"))
    dag = next(r for m, r in rows.items() if "transport=ssm" in m)
    assert ssm["ok"] == "7/7", ssm
    assert ssm["calls_match"] and ssm["api_calls"] == ssm["server_calls"], ssm
    assert dag["ok"].startswith("success, 7 items, 1 email"), dag
    for row in (ssm, dag):
        calls = row["server_calls"]
        assert calls["SendCommand"] == 7 and calls["DescribeInstanceInformation"] == 1, row
        assert calls["GetCommandInvocation"] == 7, row  # one per host: the inline output
        assert 7 <= calls["ListCommandInvocations"] <= 7 * 90, row  # a page per command per poll, bounded
        assert set(calls) == {"SendCommand", "DescribeInstanceInformation", "GetCommandInvocation",
                              "ListCommandInvocations"}, row
        assert row["calls_per_host"]["GetCommandInvocation"] == 1.0
        assert "moto_cpu_s" in row  # the stand-in plays SSM and every agent: its cost is reported
