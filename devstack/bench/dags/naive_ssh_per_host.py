"""The naive design, for `make bench` only: one mapped task per host, each running the checks through the SSH
provider's SSHHook (paramiko), one command per probe — what "one SSHOperator per host" costs in Airflow."""
from __future__ import annotations

import json
import os
from datetime import datetime

from airflow.sdk import dag, task

HOSTS = json.loads(os.environ.get("BENCH_NAIVE_HOSTS", "[]"))


@dag(schedule=None, start_date=datetime(2026, 1, 1), catchup=False, tags=["bench"])
def naive_ssh_per_host():
    @task
    def check(address: str) -> int:
        from airflow.providers.ssh.hooks.ssh import SSHHook

        from include.checks.catalogue import HOST_PROBES

        hook = SSHHook(ssh_conn_id="bench_ssh", remote_host=address, conn_retry_attempts=1)
        with hook.get_conn() as client:
            codes = [hook.exec_ssh_client_command(client, p.command, get_pty=False, environment=None)[0]
                     for p in HOST_PROBES]
        return sum(1 for c in codes if c == 0)  # a count, not the output: XCom stays small

    check.expand(address=HOSTS)


naive_ssh_per_host()
