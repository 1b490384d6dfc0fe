"""Real Airflow runs for `make bench`: the local AWS stand-in seeded with N instances, and two ways to run a DAG.

- `dag_test`: `dag.test()` in a fresh process (what `make demo` uses): serial, one process.
- `scheduler`: `airflow standalone` — scheduler, dag-processor, triggerer and api-server, LocalExecutor on the
  embedded SQLite database, i.e. what `make up` starts — with the DAG triggered through the CLI, so mapped
  batches run in parallel worker processes (`parallelism`).

Both report wall time, the Airflow side's CPU (every process they started), the moto server's and the
simulator's CPU over the same interval (so a reader sees who did the work), peak RSS of the task process,
XCom bytes and — for the scheduler — every "database is locked" line in its logs.
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from devstack import procs
from devstack.procs import PROJECT, free_port, wait_until
from devstack.stack import local_aws
from devstack.stack.local_stack import connections_env
from devstack.standins.aws.seed import REGION

AIRFLOW = str(Path(sys.executable).with_name("airflow"))
LOCKED = "database is locked"


def process_cpu(pid: int | None) -> float:
    """CPU seconds a running process has used (0 if it is gone)."""
    try:
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    except (psutil.Error, TypeError):
        return 0.0


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process tree: each live process plus everything its reaped children used."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for proc in tree:
        try:
            t = proc.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.Error:
            pass
    return total


class CpuByRole:
    """CPU of a process tree by what each process is (scheduler, api-server, dag-processor, triggerer, executor
    workers, task supervisors, task runners), sampled every `every_s` from a thread: which part of Airflow
    spends the run's CPU. A process is credited with what it used between the first and the last sample that
    saw it, under the title it had last (a process that lives less than one interval is missed; the tree total
    above is exact)."""

    ROLES = (("localexecutor", "executor worker (supervises its tasks)"), ("supervisor", "executor worker (supervises its tasks)"),
             ("airflow worker --", "task runner"), ("api_server", "api-server"), ("api-server", "api-server"),
             ("serve-logs", "serve-logs"), ("dag-processor", "dag-processor"), ("dag_processor", "dag-processor"),
             ("triggerer", "triggerer"), ("scheduler", "scheduler"), ("standalone", "standalone"))

    def __init__(self, pid: int, every_s: float = 0.25):
        import threading
        self.pid, self.every_s = pid, every_s
        self.first: dict[int, tuple[str, float]] = {}
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def role(self, proc: psutil.Process) -> str:
        title = " ".join(proc.cmdline()).lower()
        if title.startswith("airflow worker -- ") and "localexecutor" not in title:
            return "task runner " + title.split()[-1]  # its task instance's id: stop(ti_tasks) names the task
        return next((name for key, name in self.ROLES if key in title), "other: " + title[:60])

    def _sample(self) -> None:
        try:
            tree = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
        except psutil.Error:
            return
        for proc in tree:
            try:
                t = proc.cpu_times()
                cpu, role = t.user + t.system, self.role(proc)
                earlier = self.first.get(proc.pid)
                if earlier is not None and role.startswith("other: "):
                    role = earlier[0]  # an exited process (a zombie) has no title left: keep the last one seen
                # The latest title: a task runner starts as a fork of its executor worker and retitles itself.
                self.first[proc.pid] = (role, earlier[1] if earlier else cpu)
                self.last[proc.pid] = cpu
            except psutil.Error:
                pass

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self._sample()

    def start(self) -> "CpuByRole":
        self._sample()
        self._thread.start()
        return self

    def stop(self, ti_tasks: dict[str, str] | None = None) -> dict[str, dict]:
        """role → processes and CPU; task runners as "task runner: <task_id>" (`ti_tasks`: the metadata DB's
        task instance id, without hyphens → task id)."""
        self._stop.set()
        self._thread.join()
        out: dict[str, dict] = {}
        for pid, (role, cpu0) in self.first.items():
            if role.startswith("task runner "):
                role = "task runner: " + (ti_tasks or {}).get(role.split()[-1].replace("-", ""), "?")
            row = out.setdefault(role, {"processes": 0, "cpu_s": 0.0})
            row["processes"] += 1
            row["cpu_s"] = round(row["cpu_s"] + self.last[pid] - cpu0, 2)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["cpu_s"]))


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # every reaped descendant, grandchildren included
    return usage.ru_utime + usage.ru_stime


@dataclass
class BenchAws:
    """moto server + SMTP sink on loopback, seeded once with the N bench instances (shared by the DAG rows)."""

    root: Path
    procs: list[subprocess.Popen] = field(default_factory=list)
    endpoint: str = ""
    smtp_port: int = 0
    ssm_hosts: int = 0  # instances registered with the SSM stand-in (0: moto's own SSM, nothing runs)

    def start(self, hosts: list[dict], ssm_agent_key: Path | None = None, agent_port: int = 0) -> "BenchAws":
        """With `ssm_agent_key`, moto runs SSM commands (EC2AUDIT_SSM_DIR) and every seeded instance is
        registered as SSM-managed, Online, its agent on (address, agent_port) of the simulated fleet."""
        from devstack.standins.aws.seed import seed_fleet

        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        env = {"EC2AUDIT_SSM_DIR": str(self.ssm_dir)} if ssm_agent_key else None
        moto, self.endpoint = local_aws.spawn_moto(env=env)
        self.smtp_port = free_port()
        self.procs = [moto, procs.spawn([sys.executable, "-m", "devstack.standins.sinks.smtp", "--host", "127.0.0.1", "--port",
                                    str(self.smtp_port), "--maildir", str(self.maildir)])]
        try:
            started = time.perf_counter()
            seed_fleet(self.endpoint, hosts, REGION, cidrs=("127.43.0.0/16", "127.43.0.0/16"))
        except BaseException:
            self.stop()  # the caller never gets this object back to stop it
            raise
        print(f"  moto seeded with {len(hosts)} instances in {time.perf_counter() - started:.0f}s", flush=True)
        if ssm_agent_key:
            from devstack.standins.hosts.ssm_agents import register_fleet_host

            for host in hosts:
                register_fleet_host(self.ssm_dir, host["instance_id"], host["address"], agent_port, ssm_agent_key,
                                    computer_name=f"ip-{host['address'].replace('.', '-')}")
            self.ssm_hosts = len(hosts)
        return self

    @property
    def ssm_dir(self) -> Path:
        """The SSM stand-in's registry (devstack/standins/hosts/ssm_agents.py): which instances it manages, and how."""
        return self.root / "ssm"

    def ssm_calls(self) -> dict[str, int]:
        """The SSM calls moto has served so far, per action (cumulative: take differences)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.endpoint}/moto-api/ec2audit/ssm-calls", timeout=30) as answer:
            return json.loads(answer.read())["calls"]

    def cpu_by_action(self) -> dict[str, dict]:
        """moto's CPU so far per AWS action (cumulative): {"dynamodb.Query": {"calls", "cpu_s"}, ...}."""
        import urllib.request

        with urllib.request.urlopen(f"{self.endpoint}/moto-api/ec2audit/cpu", timeout=30) as answer:
            return json.loads(answer.read())

    @property
    def maildir(self) -> Path:
        return self.root / "mail"

    @property
    def moto_pid(self) -> int:
        return self.procs[0].pid

    def mails(self) -> int:
        return len(list(self.maildir.glob("*.eml")))

    def stop(self) -> None:
        for proc in self.procs:
            procs.stop_group(proc)

    def airflow_env(self, home: Path, key: Path, dags_folder: Path = PROJECT / "dags") -> dict[str, str]:
        """Environment of an Airflow that audits the bench fleet; its metadata DB is migrated here."""
        home.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(PROJECT), "AIRFLOW_HOME": str(home),
               "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
               "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "EC2_AUDIT_SCHEDULE": "none",
               **connections_env(self.endpoint, "testing", key, self.smtp_port, ssh_port=2222)}
        migrate(env)
        return env


def migrate(env: dict) -> None:
    done = subprocess.run([AIRFLOW, "db", "migrate"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed: {done.stderr[-2000:]}")


def xcom_bytes(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute("select coalesce(sum(length(value)), 0) from xcom").fetchone()[0]


def peak_task_rss_mb(logs: Path) -> int | None:
    """The largest 'peak RSS N MB' a verify task logged (include/pipeline.verify)."""
    found = [int(m) for f in logs.rglob("*.log") for m in re.findall(r"peak RSS (\d+) MB", f.read_text(errors="replace"))]
    return max(found) if found else None


def locked_lines(home: Path) -> int:
    return sum(f.read_text(errors="replace").count(LOCKED) for f in home.rglob("*.log"))


DAG_TEST_CHILD = """import json, os, resource, sys
from datetime import datetime, timezone
from airflow.dag_processing.dagbag import DagBag
dag = DagBag(dag_folder=sys.argv[1]).get_dag(sys.argv[2])
profile = os.environ.get("EC2AUDIT_BENCH_PROFILE")  # a path: cProfile the run (where the Airflow CPU goes)
if profile:
    import cProfile
    profiler = cProfile.Profile()
    profiler.enable()
run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0), run_conf=json.loads(sys.argv[3]))
if profile:
    profiler.disable()
    profiler.dump_stats(profile)
print('STATE', run.state)
print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def dag_test(env: dict, dag_id: str, conf: dict, timeout_s: float, sim_pid: int | None = None,
             moto_pid: int | None = None) -> dict:
    """One `dag.test()` run in a fresh process, uncapped (the caller sizes timeout_s)."""
    cpu0, moto0, sim0 = children_cpu(), process_cpu(moto_pid), process_cpu(sim_pid)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", DAG_TEST_CHILD, env["AIRFLOW__CORE__DAGS_FOLDER"], dag_id,
                           json.dumps(conf)], env=env, capture_output=True, text=True, timeout=timeout_s)
    wall = time.perf_counter() - start
    rss_kb = next((int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("MAXRSS_KB")), 0)
    return {"state": "success" if "STATE success" in done.stdout else "failed", "wall_s": wall,
            "airflow_cpu_s": children_cpu() - cpu0, "moto_cpu_s": process_cpu(moto_pid) - moto0,
            "sim_cpu_s": process_cpu(sim_pid) - sim0, "process_peak_rss_mb": round(rss_kb / 1024),
            "xcom_bytes": xcom_bytes(Path(env["AIRFLOW_HOME"]) / "airflow.db"),
            "phases_s": phases(Path(env["AIRFLOW_HOME"]) / "airflow.db")}


def phases(db: Path) -> dict[str, float]:
    """Seconds from the first start to the last end of each task (all mapped instances of verify_batch
    together): where a DAG run's wall time went."""
    rows = _ro(db, "select task_id, min(start_date), max(end_date) from task_instance where start_date is not null "
                   "and end_date is not null group by task_id")
    from datetime import datetime

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text.replace(" ", "T")[:26])

    return {task: round((at(end) - at(start)).total_seconds(), 1) for task, start, end in rows}


def _ro(db: Path, sql: str, *args):
    # Read-only and short: the bench's own polling must not be what locks the embedded database.
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        return conn.execute(sql, args).fetchall()


def max_parallel(db: Path, run_id: str, task_id: str) -> int:
    """How many instances of a task ran at the same time (from their start/end dates)."""
    spans = _ro(db, "select start_date, end_date from task_instance where run_id=? and task_id=? "
                    "and start_date is not null and end_date is not null", run_id, task_id)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda x: (x[0], x[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def scheduler(env: dict, dag_id: str, conf: dict, timeout_s: float, parallelism: int = 4,
              sim_pid: int | None = None, moto_pid: int | None = None) -> dict:
    """Trigger one run under `airflow standalone` (LocalExecutor, embedded SQLite) and wait for it to finish."""
    home = Path(env["AIRFLOW_HOME"])
    db = home / "airflow.db"
    env = {**env, "AIRFLOW__CORE__PARALLELISM": str(parallelism),
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
           # as docker-compose.yaml deploys it: DAG files re-parsed every 5 min, not every 30 s
           "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
           "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(free_port()),
           "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex}
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{env['AIRFLOW__API__PORT']}/execution/"
    proc = procs.spawn([AIRFLOW, "standalone"], home / "standalone.log", env)
    try:
        wait_until(lambda: bool(_ro(db, "select 1 from serialized_dag where dag_id=?", dag_id)) if db.exists() else False,
                   180, "DAG parsed by the dag-processor", proc)
        run_id = f"bench__{uuid.uuid4().hex[:8]}"
        moto0, sim0, cpu0 = process_cpu(moto_pid), process_cpu(sim_pid), tree_cpu(proc.pid)
        by_role = CpuByRole(proc.pid).start()
        start = time.perf_counter()
        subprocess.run([AIRFLOW, "dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf)],
                       env=env, check=True, capture_output=True, timeout=120)
        state, deadline = "queued", time.monotonic() + timeout_s
        while time.monotonic() < deadline and state not in ("success", "failed"):
            time.sleep(1)
            rows = _ro(db, "select state from dag_run where run_id=?", run_id)
            state = rows[0][0] if rows else "queued"
        wall = time.perf_counter() - start
        moto_cpu, sim_cpu = process_cpu(moto_pid) - moto0, process_cpu(sim_pid) - sim0
        airflow_cpu = tree_cpu(proc.pid) - cpu0  # from trigger to done; scheduler polling included
        cpu_by_role = by_role.stop(dict(_ro(db, "select id, task_id from task_instance where run_id=?", run_id)))
        tasks = dict(_ro(db, "select task_id, count(*) from task_instance where run_id=? and state='success' "
                             "group by task_id", run_id))
        parallel = max_parallel(db, run_id, "verify_batch")
    finally:
        procs.stop_group(proc)
    return {"state": state if state in ("success", "failed") else f"timed out ({state})", "wall_s": wall,
            "airflow_cpu_s": airflow_cpu, "airflow_cpu_by_role": cpu_by_role,
            "moto_cpu_s": moto_cpu, "sim_cpu_s": sim_cpu, "task_peak_rss_mb": peak_task_rss_mb(home / "logs"),
            "xcom_bytes": xcom_bytes(db), "database_locked": locked_lines(home), "max_parallel_verify": parallel,
            "tasks_succeeded": tasks, "run_id": run_id, "phases_s": phases(db)}
