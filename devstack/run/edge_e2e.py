"""Workers inside each VPC, for real: the EdgeExecutor with one Edge worker per queue, one stopped mid-run.

Starts on loopback: the local stack (moto, simulated fleet, SMTP sink) with hosts in two VPCs (127.42.14.x), and
Airflow on SQLite with the EdgeExecutor — api-server (serving the Edge worker API, `[edge] api_enabled`),
scheduler, dag-processor — and an `airflow edge worker` per VPC queue: `edge-vpc-a` (`vpc-a`) and `edge-vpc-b`
(`vpc-b`, one job at a time). Two layouts (`central`):

- `local` (the test's): `AIRFLOW__CORE__EXECUTOR=LocalExecutor,…EdgeExecutor` and
  EC2_AUDIT_QUEUE_EXECUTOR=EdgeExecutor — the central tasks (and the default queue's batch) on the default
  executor, as docker-compose.yaml's edge profile does with Celery; only the per-VPC batches go to Edge.
- `edge`: the EdgeExecutor alone, with a third worker, `edge-central`, on queue `default`.

The workers reach Airflow over HTTP only, as a worker inside a VPC with outbound HTTPS does: each has its own
AIRFLOW_HOME and a metadata-DB URL that points nowhere, and authenticates with JWTs signed by the shared
`[api_auth] jwt_secret`.

The deployment has EC2_AUDIT_QUEUES=vpc-a,vpc-b; the run maps VPC A by its id and VPC B by `<account>/<vpc-id>`,
the rest of the fleet stays on the default queue. While edge-vpc-b runs its first batch it gets SIGTERM (its
process group, by PID): it stops fetching and passes SIGTERM on to its running batch, which ends up_for_retry
(the hosts it already judged are stored; the retry skips them); its batches wait queued while the other queues
finish. Started again, it picks that batch up and the run succeeds. Checked: every verify
batch ran on the worker of its queue (the task instance's hostname and the edge job's worker), no batch mixes
VPCs, every running instance has exactly one evidence item for the day, from this run. Everything started
here is stopped by PID. No root needed.

    .venv/bin/python -m devstack.run.edge_e2e [--central edge]
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
import urllib.error
import uuid
from pathlib import Path

from devstack import procs
from devstack.procs import PROJECT, free_port, http_ok, wait_for, wait_until
from devstack.stack.local_stack import LocalStack
from devstack.stack.standalone import Api
from devstack.standins.aws.seed import clients
from devstack.standins.hosts.fleet import SSH_PORT

DAG_ID = "ec2_audit_compliance"
EDGE = "airflow.providers.edge3.executors.EdgeExecutor"
EXECUTORS = {"local": f"LocalExecutor,{EDGE}", "edge": EDGE}  # central layout → [core] executor
QUEUES = ("vpc-a", "vpc-b")
# worker name → (queues it serves, concurrency); edge-central only when the EdgeExecutor runs everything
WORKERS = {"edge-central": ("default", 4), "edge-vpc-a": ("vpc-a", 2), "edge-vpc-b": ("vpc-b", 1)}
TASK_QUEUE = {"verify_batch": "default", "verify_batch__vpc-a": "vpc-a", "verify_batch__vpc-b": "vpc-b"}
STOPPED = "edge-vpc-b"


def workers_of(central: str) -> dict[str, tuple[str, int]]:
    return {n: w for n, w in WORKERS.items() if central == "edge" or n != "edge-central"}


def worker_of_queue(central: str) -> dict[str, str]:
    """queue → the edge worker that must run its tasks ("" = the default executor, no edge worker)."""
    return {"default": "", **{queues: name for name, (queues, _) in workers_of(central).items()}}


def edge_fleet() -> list[dict]:
    """4 hosts in VPC "a", 3 running + 1 stopped in VPC "b", 2 in the first VPC (no queue: the default)."""
    hosts = []
    for label, octets in (("a", range(10, 14)), ("b", range(20, 24)), ("", range(30, 32))):
        for octet in octets:
            address = f"127.42.14.{octet}"
            hosts.append({"address": address, "port": SSH_PORT, "name": f"{label or 'central'}-{octet}",
                          "environment": "prod", "profile": "compliant", "behaviour": "ok", "expected": "COMPLIANT",
                          "identity": {"hostname": f"ip-{address.replace('.', '-')}"},
                          **({"vpc": label} if label else {}),
                          **({"state": "stopped", "expected": None} if octet == 23 else {})})
    return hosts


def available() -> tuple[bool, str]:
    try:
        import airflow.providers.edge3  # noqa: F401
    except ImportError:
        return False, "apache-airflow-providers-edge3 is not installed (requirements.txt)"
    return True, ""


class Edge:
    """Airflow with the EdgeExecutor on a local stack, and its edge workers, each in its own process group."""

    def __init__(self, root: Path, stack: LocalStack, central: str = "local"):
        self.root, self.stack, self.central = root, stack, central
        self.workers_started = workers_of(central)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = root / "airflow.db"
        self.user, self.password = "operator", uuid.uuid4().hex
        self.procs: dict[str, object] = {}
        self.jwt_secret = uuid.uuid4().hex
        self.api: Api | None = None

    def env(self) -> dict[str, str]:
        (self.root / "passwords.json").write_text(json.dumps({self.user: self.password}))
        return {**os.environ, **self.stack.airflow_env(),
                "AIRFLOW_HOME": str(self.root / "airflow"),
                "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.db}",
                "AIRFLOW__CORE__EXECUTOR": EXECUTORS[self.central],
                **({"EC2_AUDIT_QUEUE_EXECUTOR": "EdgeExecutor"} if self.central == "local" else {}),
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{self.user}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(self.root / "passwords.json"),
                "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base, "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",  # when idle, look again after 0.2 s, not 1 s
                # The Edge worker API on the api-server, and where workers find it.
                "AIRFLOW__EDGE__API_ENABLED": "True",
                "AIRFLOW__EDGE__API_URL": f"{self.base}/edge_worker/v1/rpcapi",
                # Short polls and heartbeats for a test (defaults 5 s and 30 s); jobs kept to be read afterwards.
                "AIRFLOW__EDGE__JOB_POLL_INTERVAL": "1", "AIRFLOW__EDGE__HEARTBEAT_INTERVAL": "2",
                "AIRFLOW__EDGE__JOB_SUCCESS_PURGE": "120", "AIRFLOW__EDGE__JOB_FAIL_PURGE": "120",
                # The deployment's queues: the same for the dag-processor and every worker (include/settings/queues.py).
                "EC2_AUDIT_QUEUES": ",".join(QUEUES),
                "EC2_AUDIT_SCHEDULE": "none", "EC2_AUDIT_RETRY_DELAY_SECONDS": "2"}

    def worker_env(self, name: str) -> dict[str, str]:
        """What an edge worker in a VPC has: the shared config and secret, its own home, no database."""
        home = self.root / "workers" / name
        home.mkdir(parents=True, exist_ok=True)
        return {**self.env(), "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////nonexistent/edge-workers-have-no-database.db"}

    def _start(self, name: str, args: list[str], env: dict[str, str]):
        self.procs[name] = procs.spawn(args, self.root / f"{name}.log", env)
        return self.procs[name]

    def start(self) -> "Edge":
        airflow = str(Path(sys.executable).with_name("airflow"))
        env = self.env()
        import subprocess

        migrate = subprocess.run([airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=300)
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {migrate.stderr[-3000:]}")
        api = self._start("api-server", [airflow, "api-server"], env)
        self._start("scheduler", [airflow, "scheduler"], env)
        self._start("dag-processor", [airflow, "dag-processor"], env)
        wait_until(lambda: http_ok(f"{self.base}/api/v2/monitor/health"), 180, "api-server", api)
        self.api = Api(self.base, self.user, self.password)
        for name in self.workers_started:
            self.start_worker(name)
        wait_for(lambda: self.dag_parsed(), 180, f"{DAG_ID} parsed", self.tail)
        wait_for(lambda: all(self.workers().get(n) in ("idle", "running") for n in self.workers_started), 120,
                 "edge workers registered", lambda: f"{self.workers()} {self.tail('edge-vpc-a')}")
        return self

    def start_worker(self, name: str):
        airflow = str(Path(sys.executable).with_name("airflow"))
        queues, concurrency = WORKERS[name]
        return self._start(name, [airflow, "edge", "worker", "--edge-hostname", name, "--queues", queues,
                                  "--concurrency", str(concurrency), "--pid", str(self.root / f"{name}.pid")],
                           self.worker_env(name))

    def stop_worker(self, name: str, timeout: float = 120) -> int | None:
        """SIGTERM the worker's process group (by the PID we started): it passes the signal to its running job
        (which ends up_for_retry) and exits."""
        proc = self.procs[name]
        procs.stop_group(proc, signal.SIGTERM, timeout=timeout)
        return proc.returncode

    def stop(self) -> None:
        """The edge workers together (each signs off through the api-server), then the central components
        together: shutdowns that overlap instead of adding up."""
        procs.stop_groups([p for n, p in self.procs.items() if n in WORKERS], timeout=30)
        procs.stop_groups([p for n, p in reversed(self.procs.items()) if n not in WORKERS], timeout=30)

    def tail(self, name: str = "scheduler", n: int = 3000) -> str:
        log = self.root / f"{name}.log"
        return log.read_text(errors="replace")[-n:] if log.exists() else ""

    # -- what the run did, read from the REST API and the edge tables
    def dag_parsed(self) -> bool:
        return self.api.dag_parsed(DAG_ID) is not None

    def query(self, sql: str, *args) -> list[tuple]:
        """Read the metadata DB (read-only; a writer's lock is waited for, bounded)."""
        for _ in range(20):
            try:
                with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as conn:
                    return conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "no such table" not in str(exc):
                    raise
                time.sleep(0.5)
        return []

    def workers(self) -> dict[str, str]:
        return dict(self.query("select worker_name, state from edge_worker"))

    def jobs(self, run_id: str) -> list[dict]:
        rows = self.query("select task_id, map_index, try_number, queue, state, edge_worker from edge_job "
                          "where run_id = ? order by task_id, map_index, try_number", run_id)
        return [dict(zip(("task_id", "map_index", "try_number", "queue", "state", "worker"), r)) for r in rows]

    def task_instances(self, run_id: str) -> list[dict]:
        try:
            tis = self.api.get(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances?limit=200")["task_instances"]
        except urllib.error.URLError:
            return []
        return [{k: t.get(k) for k in ("task_id", "map_index", "state", "hostname", "queue", "try_number")} for t in tis]

    def xcom(self, run_id: str, task_id: str):
        return self.api.get(f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/return_value")["value"]


def run(root: Path, central: str = "local", timeout_s: float = 240) -> dict:
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    fleet = edge_fleet()
    # Slow hosts (each session waits this long): a batch is still running when its worker is stopped.
    stack = LocalStack(root / "stack", fleet, latency_ms=2500)
    edge = Edge(root, stack, central)
    result: dict = {"central": central}
    try:
        stack.start()
        vpc = {h.get("vpc", ""): h["vpc_id"] for h in fleet}
        account = clients(stack.endpoint)[0].describe_vpcs(VpcIds=[vpc["b"]])["Vpcs"][0]["OwnerId"]
        queue_map = {vpc["a"]: "vpc-a", f"{account}/{vpc['b']}": "vpc-b"}
        edge.start()
        conf = {"queue_map": queue_map, "batch_size": 2, "concurrency": 4, "connect_timeout": 3, "host_timeout": 30,
                "command_timeout": 15, "report_dir": str(root / "reports"), "recipients": ["secops@example.test"]}
        run_id = edge.api.trigger(DAG_ID, conf)
        result.update(run_id=run_id, queue_map=queue_map)
        deadline = time.monotonic() + timeout_s

        # 1. edge-vpc-b runs a batch (its task instance is running there): stop it, SIGTERM to its process group.
        def running_on_b():
            tis = [t for t in edge.task_instances(run_id) if t["task_id"] == "verify_batch__vpc-b"]
            if wrong := [t for t in tis if t["state"] in ("success", "failed")
                         or (t["state"] == "running" and t["hostname"] != STOPPED)]:  # routed elsewhere: fail now
                raise AssertionError(f"verify_batch__vpc-b ran without {STOPPED}: {wrong}")
            return [t for t in tis if t["state"] == "running" and t["hostname"] == STOPPED]

        running = wait_for(running_on_b, timeout_s, f"{STOPPED} running a batch",
                           lambda: json.dumps(edge.task_instances(run_id)) + edge.tail(STOPPED), every=0.3)
        result["stopped_while_running"] = [(t["task_id"], t["map_index"], t["try_number"]) for t in running]
        result["stopped_exit"] = edge.stop_worker(STOPPED)

        # 2. While it is down: every other batch finishes; vpc-b's others wait, picked up by no one.
        def others_done():
            tis = [t for t in edge.task_instances(run_id) if t["task_id"] in TASK_QUEUE]
            return tis if tis and all(t["state"] == "success" for t in tis if t["task_id"] != "verify_batch__vpc-b") \
                else None

        wait_for(others_done, max(5.0, deadline - time.monotonic()), "the other queues' batches to finish",
                 lambda: json.dumps(edge.task_instances(run_id)), every=1)
        waiting_polls = []
        for _ in range(3):  # a few looks, a few seconds apart: still waiting, still nobody's
            waiting_polls.append(sorted(
                (t["map_index"], t["state"]) for t in edge.task_instances(run_id)
                if t["task_id"] == "verify_batch__vpc-b" and t["state"] != "success"))
            time.sleep(2)
        result["waiting_while_down"] = waiting_polls
        result["jobs_while_down"] = [j for j in edge.jobs(run_id) if j["queue"] == "vpc-b"]
        result["run_state_while_down"] = edge.api.run_state(DAG_ID, run_id)
        result["store_evidence_while_down"] = next(
            (t["state"] for t in edge.task_instances(run_id) if t["task_id"] == "store_evidence"), None)

        # 3. Started again: it picks the waiting batches up and the run completes.
        edge.start_worker(STOPPED)
        state = wait_for(lambda: (s := edge.api.run_state(DAG_ID, run_id)) in ("success", "failed") and s,
                         max(5.0, deadline - time.monotonic()), "the run to finish",
                         lambda: json.dumps(edge.task_instances(run_id)) + edge.tail(), every=1)
        run_info = edge.api.get(f"dags/{DAG_ID}/dagRuns/{run_id}")
        day = (run_info.get("logical_date") or run_info["run_after"])[:10]
        from include.evidence.store import EvidenceStore

        items = EvidenceStore(clients(stack.endpoint)[2], "ec2_audit_evidence").day_items(day)
        result.update(
            state=state, day=day, task_instances=edge.task_instances(run_id), jobs=edge.jobs(run_id),
            batches=edge.xcom(run_id, "plan_batches"),
            items=[{"instance_id": i.instance_id, "run_id": i.run_id, "status": i.status} for i in items],
            running=sorted(h["instance_id"] for h in fleet if h.get("state", "running") == "running"),
            vpc_of={h["instance_id"]: h["vpc_id"] for h in fleet}, vpc_queue={vpc["a"]: "vpc-a", vpc["b"]: "vpc-b"},
            mails=len(stack.report_mail()))
        return result
    finally:
        edge.stop()
        stack.stop()


def problems(result: dict) -> list[str]:
    """What the Edge run got wrong; empty when it passed."""
    found = []
    if result.get("state") != "success":
        found.append(f"run state {result.get('state')}")
    worker_of = worker_of_queue(result["central"])
    verify = [t for t in result["task_instances"] if t["task_id"] in TASK_QUEUE]
    if {t["task_id"] for t in verify} != set(TASK_QUEUE):
        found.append(f"verify tasks {sorted({t['task_id'] for t in verify})}, expected {sorted(TASK_QUEUE)}")
    for t in result["task_instances"]:  # each batch on the worker of its queue; the central tasks never in a VPC
        queue = TASK_QUEUE.get(t["task_id"], "default")
        on = t["hostname"] if t["hostname"] in WORKERS else ""  # "" = not an edge worker (the default executor)
        if t["queue"] != queue or on != worker_of[queue] or t["state"] != "success":
            found.append(f"{t['task_id']}[{t['map_index']}]: queue {t['queue']}, ran on {t['hostname']}, {t['state']}")
    for j in result["jobs"]:
        if j["worker"] != worker_of[TASK_QUEUE.get(j["task_id"], "default")]:
            found.append(f"edge job {j['task_id']}[{j['map_index']}] try {j['try_number']} ran on {j['worker']}")
    for b in result["batches"]:  # one batch, one queue: the hosts' VPC decides it
        queues = {result["vpc_queue"].get(result["vpc_of"][i], "default") for i in b["instance_ids"]}
        if queues != {b.get("queue")}:
            found.append(f"batch {b['label']} (queue {b.get('queue')}) holds hosts of queues {sorted(queues)}")
    if len({b.get("queue") for b in result["batches"]}) != 3:
        found.append(f"batches not on all three queues: {[b.get('queue') for b in result['batches']]}")
    if not result.get("stopped_while_running"):
        found.append(f"{STOPPED} was not stopped while running a batch")
    if not all(result["waiting_while_down"]):
        found.append(f"no vpc-b batch waited while {STOPPED} was down: {result['waiting_while_down']}")
    elif any(state == "running" for poll in result["waiting_while_down"] for _, state in poll):
        found.append(f"a vpc-b batch ran while {STOPPED} was down: {result['waiting_while_down']}")
    if any(j["state"] == "running" or (j["worker"] and j["worker"] != STOPPED) for j in result["jobs_while_down"]):
        found.append(f"vpc-b jobs while {STOPPED} was down: {result['jobs_while_down']}")
    if result["run_state_while_down"] != "running" or result["store_evidence_while_down"] not in (None, "none", "scheduled"):
        found.append(f"the run went on without vpc-b: {result['run_state_while_down']}, "
                     f"store_evidence {result['store_evidence_while_down']}")
    ids = [i["instance_id"] for i in result["items"]]
    if sorted(ids) != result["running"]:
        found.append(f"evidence for {sorted(ids)}, expected exactly one item per running instance {result['running']}")
    if any(i["run_id"] != result["run_id"] for i in result["items"]):
        found.append(f"items not from this run: {[i for i in result['items'] if i['run_id'] != result['run_id']]}")
    if any(i["status"] != "COMPLIANT" for i in result["items"]):
        found.append(f"statuses {[i['status'] for i in result['items']]}")
    if result["mails"] != 1:
        found.append(f"{result['mails']} emails, expected 1")
    return found


def main() -> int:
    ok, why = available()
    if not ok:
        print(why)
        return 2
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # `timeout` must still run run()'s cleanup
    central = sys.argv[sys.argv.index("--central") + 1] if "--central" in sys.argv else "local"
    result = run(PROJECT / ".local" / "edge", central)
    print(json.dumps(result, indent=2, default=str))
    wrong = problems(result)
    print(f"edge e2e {'FAILED: ' + '; '.join(wrong) if wrong else 'passed'} in {time.monotonic() - started:.0f}s")
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
