"""A real Airflow (`airflow standalone`: api-server, scheduler, dag-processor, triggerer; LocalExecutor) on a
local stack, for the tests that need the scheduler itself: the UI, backfills, deadlines, human-in-the-loop.

Signs in one SimpleAuthManager user (admin) and talks to the REST API with its token. Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from devstack import procs
from devstack.procs import free_port, http_ok, wait_for, wait_until


class Api:
    """The Airflow REST API (v2) with a token for one user."""

    def __init__(self, base: str, user: str, password: str):
        self.base = base
        body = json.dumps({"username": user, "password": password}).encode()
        request = urllib.request.Request(f"{base}/auth/token", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            self.token = json.loads(response.read())["access_token"]

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.base}/api/v2/{path}", method=method, data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def get(self, path: str) -> dict:
        return self.call("GET", path)

    def runs(self, dag_id: str) -> list[dict]:
        return self.get(f"dags/{dag_id}/dagRuns?limit=100")["dag_runs"]

    def trigger(self, dag_id: str, conf: dict, logical_date: str | None = None) -> str:
        return self.call("POST", f"dags/{dag_id}/dagRuns", {"logical_date": logical_date, "conf": conf})["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.get(f"dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str]:
        tis = self.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"] if t.get("map_index", -1) < 0 else f"{t['task_id']}[{t['map_index']}]": t["state"]
                for t in tis}

    def task_failures(self, dag_id: str, run_id: str) -> str:
        try:
            return "; ".join(f"{k}={v}" for k, v in self.task_states(dag_id, run_id).items() if v != "success")
        except urllib.error.HTTPError as error:
            return f"(task instances: HTTP {error.code})"

    def dag_parsed(self, dag_id: str) -> dict | None:
        try:
            return self.get(f"dags/{dag_id}")
        except urllib.error.HTTPError:
            return None


class Standalone:
    """`airflow standalone` in its own process group, with the stack's connections and `extra_env`."""

    def __init__(self, stack, root: Path, dag_ids: list[str], extra_env: dict[str, str] | None = None,
                 user: str = "operator", other_users: tuple[str, ...] = ()):
        self.stack, self.root, self.dag_ids = stack, Path(root), dag_ids
        # `other_users`: more admins, signed in by api_as (e.g. one who is not an assigned approver)
        self.passwords = {u: uuid.uuid4().hex for u in (user, *other_users)}
        self.user, self.password = user, self.passwords[user]
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = self.root / "standalone.log"
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.api: Api | None = None

    @property
    def env(self) -> dict[str, str]:
        (self.root / "passwords.json").write_text(json.dumps(self.passwords))
        bin_dir = str(Path(sys.executable).parent)  # standalone starts its components as `airflow …`
        return {**os.environ, **self.stack.airflow_env(), "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                "AIRFLOW__CORE__PARALLELISM": "4", "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port), "AIRFLOW__API__BASE_URL": self.base,
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # a paused DAG blocks backfill runs
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:admin" for u in self.passwords),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.root / "passwords.json"),
                "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                # A test's pace, not a deployment's: when idle the scheduler looks again after 0.2 s (default 1 s,
                # most of each task hand-off), and sweeps approvals past their timeout every 2 s (default 15 s).
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "2",
                "EC2_AUDIT_RETRY_DELAY_SECONDS": "2", **self.extra_env}

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def __enter__(self) -> "Standalone":
        env = self.env
        if "EC2_AUDIT_SCHEDULE" not in self.extra_env:  # unless asked: the daily schedule, backfills need one
            env.pop("EC2_AUDIT_SCHEDULE", None)
        self.proc = procs.spawn([str(Path(sys.executable).with_name("airflow")), "standalone"], self.log, env,
                                log_mode="wb")
        try:
            wait_until(lambda: http_ok(f"{self.base}/api/v2/monitor/health"), 180, "airflow standalone", self.proc)
            self.api = Api(self.base, self.user, self.password)
            for dag_id in self.dag_ids:
                wait_for(lambda d=dag_id: self.api.dag_parsed(d), 180, f"{dag_id} parsed by the dag-processor", self.tail)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            procs.stop_group(self.proc, timeout=60)

    def api_as(self, user: str) -> Api:
        return Api(self.base, user, self.passwords[user])

    @property
    def airflow_home(self) -> Path:
        return Path(self.stack.airflow_env()["AIRFLOW_HOME"])

    def scheduler_saw(self, *parts: str) -> bool:
        """Some line of the scheduler's log holds all of `parts` (to sync with what the API cannot show)."""
        return any(all(p in line for p in parts) for line in self.tail(2_000_000).splitlines())

    def finished(self, dag_id: str, run_id: str, timeout: float = 420) -> str:
        """Wait for one run to end; its state."""
        return wait_for(lambda: (s := self.api.run_state(dag_id, run_id)) in ("success", "failed") and s, timeout,
                        f"{dag_id} run {run_id} to finish",
                        lambda: self.api.task_failures(dag_id, run_id) + "\n" + self.tail())
