"""`make up`: the local stack plus `airflow standalone`, so runs and backfills can be triggered from the UI.

Stops the stack (by PID) when Airflow exits or on Ctrl-C. The stack's environment is also written to
.local/up/stack.env for use from another shell (`source .local/up/stack.env; airflow dags list`).
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from devstack import procs
from devstack.procs import PROJECT
from devstack.stack.local_stack import LocalStack
from devstack.standins.hosts.demo_fleet import demo_fleet


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM stops the stack as cleanly as Ctrl-C


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    root = PROJECT / ".local" / "up"
    root.mkdir(parents=True, exist_ok=True)
    with LocalStack(root, demo_fleet()) as stack:
        bin_dir = str(Path(sys.executable).parent)  # standalone starts its components as `airflow …`
        env = {**os.environ, **stack.airflow_env(), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
               # Few mapped tasks at once keeps the embedded SQLite metadata DB out of "database is locked".
               "AIRFLOW__CORE__PARALLELISM": os.environ.get("AIRFLOW__CORE__PARALLELISM", "4"),
               "AIRFLOW__API__HOST": "127.0.0.1",
               # Unpaused, so UI triggers and backfills run at once (a paused DAG blocks backfill runs).
               "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False"}
        print(f"local stack up (moto {stack.endpoint}, SMTP sink 127.0.0.1:{stack.smtp_port}, mail in {stack.maildir})")
        print(f"environment for other shells: source {root / 'stack.env'}")
        print("starting airflow standalone: the UI is on http://127.0.0.1:8080 (login details are printed below)")
        airflow = str(Path(sys.executable).with_name("airflow"))
        proc = procs.spawn([airflow, "standalone"], env=env, inherit_output=True)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            procs.stop_group(proc)
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
