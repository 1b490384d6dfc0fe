"""`make e2e-celery`: a real distributed run without Docker, then a worker killed mid-run.

Starts on loopback: PostgreSQL and Redis (Debian packages), the local stack (moto, simulated fleet, SMTP
sink), and Airflow with CeleryExecutor — api-server, scheduler, dag-processor and TWO Celery workers. Triggers
the DAG, SIGKILLs one worker while it runs a verify batch, and checks that the run still succeeds with every
running instance stored exactly once, batches spread over both workers, and the email sent. Everything it
started is stopped by PID. Needs root (PostgreSQL runs as the postgres user).

    .venv/bin/python -m devstack.run.celery_e2e
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devstack import clock, procs
from devstack.procs import PROJECT, free_port, wait_until
from devstack.stack.local_stack import LocalStack
from devstack.standins.aws.seed import clients
from devstack.standins.hosts.demo_fleet import demo_fleet

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/usr/lib/postgresql/15/bin"))
DAG_ID = "ec2_audit_compliance"


class Processes:
    def __init__(self, root: Path) -> None:
        self.root, self.procs = root, {}

    def start(self, name: str, args: list[str], env: dict | None = None, user: str | None = None) -> subprocess.Popen:
        if user:
            args = ["runuser", "-u", user, "--", *args]
        proc = procs.spawn(args, self.root / f"{name}.log", env)
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGTERM) -> None:
        proc = self.procs.get(name)
        if proc is not None:  # the process group we created: the component and its children
            procs.stop_group(proc, sig, timeout=20)

    def stop_all(self) -> None:
        """The workers together (a running task still reports to the api-server), then the other Airflow
        components together, then Redis and PostgreSQL, which they use: shutdowns overlap instead of adding up."""
        services = {"redis": signal.SIGTERM, "postgres": signal.SIGINT}  # SIGINT: PostgreSQL's fast shutdown
        workers = [p for n, p in self.procs.items() if n.startswith("worker")]
        procs.stop_groups(workers, timeout=20)
        procs.stop_groups([p for n, p in self.procs.items() if n not in services and p not in workers], timeout=20)
        for name, sig in services.items():
            self.kill(name, sig)


def started_verify(worker_log: Path) -> set[str]:
    """Task-instance ids of the verify batches this Celery worker started, read from its own log."""
    if not worker_log.exists():
        return set()
    return set(re.findall(r"task_id=verify_batch/.*?TaskInstanceDTO\(id=UUID\('([0-9a-f-]+)'\)",
                          worker_log.read_text(errors="replace")))


def still_starting(worker_log: Path, states: dict[str, str]) -> bool:
    """Some task this Celery worker has received is not running yet: reserved (prefetched) and not started, or
    started and not yet `running` in the metadata DB. Killed then, that task would sit "queued" until the
    scheduler's task_queued_timeout re-queues it (a minute), instead of being failed as a running task is."""
    if not worker_log.exists():
        return True
    text = worker_log.read_text(errors="replace")
    received = set(re.findall(r"Task execute_workload\[([0-9a-f-]+)\] received", text))
    executing = dict(re.findall(r"\[([0-9a-f-]+)\] Executing workload in Celery: .*?TaskInstanceDTO\(id=UUID\('([0-9a-f-]+)'\)",
                                text))
    return bool(received - set(executing)) or any(states.get(ti) in (None, "", "scheduled", "queued")
                                                  for ti in executing.values())


def psql(port: int, sql: str) -> str:
    result = subprocess.run([str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "airflow",
                             "-At", "-c", sql], capture_output=True, text=True, timeout=30)
    return result.stdout.strip()


def run(root: Path, timeout_s: float = 480) -> dict:
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    procs = Processes(root)
    fleet = demo_fleet()
    stack = LocalStack(root / "stack", fleet, latency_ms=1500)  # slow hosts: a batch is still running when killed
    # The stack (moto, fleet, SMTP sink) starts while PostgreSQL, Redis and the migration do.
    pool = ThreadPoolExecutor(1)
    starting = pool.submit(stack.start)
    try:
        # PostgreSQL (as the postgres user) and Redis, on loopback only.
        pg_dir, pg_port, redis_port = root / "pg", free_port(), free_port()
        pg_dir.mkdir()
        shutil.chown(pg_dir, "postgres")
        shutil.chown(root, "postgres")
        subprocess.run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(pg_dir), "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True)
        procs.start("postgres", [str(PG_BIN / "postgres"), "-D", str(pg_dir), "-h", "127.0.0.1", "-p", str(pg_port),
                                 "-k", str(pg_dir)], user="postgres")
        wait_until(lambda: subprocess.run([str(PG_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(pg_port)],
                                          capture_output=True).returncode == 0, 30, "postgres")
        subprocess.run([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(pg_port), "-U", "postgres", "airflow"],
                       check=True)
        procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                              "--appendonly", "no"])
        db_env = {**os.environ, "AIRFLOW_HOME": str(root / "airflow"),
                  "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/airflow"}
        airflow = str(Path(sys.executable).with_name("airflow"))
        migrate = subprocess.run([airflow, "db", "migrate"], env=db_env, capture_output=True, text=True)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {migrate.stderr[-3000:]}")
        starting.result()

        api_port = free_port()
        env = {**os.environ, **stack.airflow_env(), **db_env,
               "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
               "EC2_AUDIT_SCHEDULE": "none",
               "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
               "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
               "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
               "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/airflow",
               "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
               "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(api_port),
               "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
               "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
               # A killed worker's task is noticed in seconds, not the default 5 minutes: 5 missed heartbeats
               # (a running task's supervisor beats every [workers] min_heartbeat_interval: 2 s here, default 5).
               "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
               "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "10",
               "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
               # The killed batch's retry starts seconds after it is failed, not the DAG's default 20-40 s
               # (retry_delay with exponential backoff), as in the other scheduler tests (devstack/stack/standalone.py).
               "EC2_AUDIT_RETRY_DELAY_SECONDS": "2",
               # The scheduler looks again after 0.2 s when idle, not 1 s: each task hand-off is quicker.
               "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
               # A task the dead worker had reserved (prefetched, not started) sits "queued" until Redis'
               # visibility timeout (hours); the scheduler re-queues it after this instead.
               "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "60",
               "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10"}
        procs.start("api-server", [airflow, "api-server"], env)
        procs.start("scheduler", [airflow, "scheduler"], env)
        procs.start("dag-processor", [airflow, "dag-processor"], env)
        for n in (1, 2):
            procs.start(f"worker{n}", [airflow, "celery", "worker", "--celery-hostname", f"worker{n}@%h"], env)
        wait_until(lambda: psql(pg_port, f"select count(*) from dag where dag_id='{DAG_ID}'") == "1", 120, "DAG parsed")
        conf = {"recipients": ["secops@example.test"], "batch_size": 4, "concurrency": 2, "connect_timeout": 3,
                "host_timeout": 30, "command_timeout": 15, "report_dir": str(root / "reports")}
        run_id = f"celery_e2e__{clock.now():%Y%m%dT%H%M%S}"
        subprocess.run([airflow, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf)],
                       env=env, check=True, capture_output=True)

        # Kill worker2 while it runs a verify batch (SIGKILL: no goodbye, as when a node dies) — once every task
        # it has taken is running (its running batches are then failed by the heartbeat timeout and retried), or
        # after 20 s of running one whatever the rest is doing.
        killed, running_since = False, None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = psql(pg_port, f"select state from dag_run where run_id='{run_id}'")
            if not killed:
                states = dict(line.split("|", 1) for line in psql(
                    pg_port, f"select id, state from task_instance where run_id='{run_id}'").splitlines() if "|" in line)
                running = {ti for ti, s in states.items() if s == "running"}
                if running & started_verify(root / "worker2.log"):
                    running_since = running_since or time.monotonic()
                    if not still_starting(root / "worker2.log", states) or time.monotonic() - running_since > 20:
                        procs.kill("worker2", signal.SIGKILL)
                        killed = True
            if state in ("success", "failed"):
                break
            time.sleep(0.5)
        tis = psql(pg_port, "select task_id, map_index, state, try_number from task_instance "
                            f"where run_id='{run_id}' order by task_id, map_index")
        by_worker = {n: len(started_verify(root / f"worker{n}.log")) for n in (1, 2)}
        day = clock.today()
        from include.evidence.store import EvidenceStore

        items = EvidenceStore(clients(stack.endpoint)[2], "ec2_audit_evidence").day_items(day)
        return {"state": state, "killed_worker2": killed, "task_instances": tis, "verify_batches_started_by_worker": by_worker,
                "items": len(items), "unique_items": len({i.instance_id for i in items}),
                "expected_items": sum(1 for h in fleet if h.get("expected")), "mails": len(stack.report_mail())}
    finally:
        procs.stop_all()
        starting.exception()  # wait until it is started (or failed), so that everything it started is stopped
        pool.shutdown()
        stack.stop()


def available() -> bool:
    return os.geteuid() == 0 and (PG_BIN / "postgres").exists() and bool(shutil.which("redis-server"))


def problems(result: dict) -> list[str]:
    """What the distributed run got wrong; empty when it passed."""
    found = []
    if result["state"] != "success":
        found.append(f"run state {result['state']}")
    if not result["killed_worker2"]:
        found.append("worker2 never ran a verify batch, so it was not killed")
    if not all(result["verify_batches_started_by_worker"].values()):
        found.append(f"verify batches not spread over both workers: {result['verify_batches_started_by_worker']}")
    if not result["items"] == result["unique_items"] == result["expected_items"]:
        found.append(f"evidence items {result['items']} (unique {result['unique_items']}), "
                     f"expected {result['expected_items']}")
    if result["mails"] != 1:
        found.append(f"{result['mails']} emails, expected 1")
    return found


def main() -> int:
    if not available():
        print("needs root, PostgreSQL and Redis: apt-get install postgresql redis-server")
        return 2
    started = time.monotonic()
    # SIGTERM (e.g. `timeout`) must still run the cleanup in run()'s finally block.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(PROJECT / ".local" / "celery")
    print(json.dumps(result, indent=2))
    wrong = problems(result)
    print(f"celery e2e {'FAILED: ' + '; '.join(wrong) if wrong else 'passed'} in {time.monotonic() - started:.0f}s")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
