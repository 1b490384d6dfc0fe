"""`make bench-quick`: SSH fan-out side by side, in ONE run, on the same simulated fleet and the same checks.

    .venv/bin/python -m devstack.bench.side_by_side [--hosts 100,1000] [--latency-ms 20] [--naive-sample 20]

Starts one simulator process serving N hosts on 127.43.x.y (a range no test uses), each answering with a
realistic health profile after `latency-ms` per command (a network round trip), then checks the whole fleet:

1. this project's transport (`include.reach.ssh.fan_out`, asyncssh, one combined script per host,
   100 sessions at once — one verify task);
2. a 50-thread paramiko pool running the same combined script;
3. the same pool running each probe as its own command (what SSHHook/SSHOperator would do);
4. Ansible ad-hoc (`-m raw`, the combined script as one command per host, forks 50), when
   `make bench-tools` has installed ansible-core into its own venv (a bench-only dependency);
5. the naive design — one host at a time, one paramiko connection, one command per probe (what one mapped
   SSHOperator task does, before Airflow's own per-task overhead) — timed on a sample and extrapolated
   (marked so);
6. this DAG end to end under `dag.test()`, discovering the same N instances from a moto server;
7. this DAG under `airflow standalone` (scheduler + LocalExecutor on the embedded SQLite, as `make up`),
   batches in parallel — with every "database is locked" in its logs counted;
8. the naive DAG (devstack/bench/dags: one mapped SSHHook task per host) under `dag.test()`, capped;
9. `ssm`: SSM Run Command (`include.reach.ssm.SsmTransport`, one verify task's reach) over the same hosts:
   the moto server runs each SendCommand on the host's SSM "agent" listener of the same simulator
   (devstack/standins/hosts/ssm_agents.py), so moto plays both SSM and every agent — its CPU is reported beside the client's;
   with the AWS calls per host by action, counted by the transport and by the server;
10. `dag-ssm`: this DAG under `dag.test()` with `transport=ssm`, with the server's SSM call counts.
   Both SSM methods run only up to SSM_MAX_HOSTS (the stand-in's agents are one SSH session each in moto).

Reports wall time, hosts/s and client CPU per host (for the DAG rows: all Airflow processes, plus the moto
server's and the simulator's CPU over the same interval); writes .local/bench/results.json and chart.png.
Bounded: every method has a per-host timeout or a cap, and the fleet size is capped at 10,000.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from devstack import clock, procs
from devstack.bench import airflow_runs as bench_airflow
from devstack.bench.airflow_runs import BenchAws, process_cpu
from devstack.procs import PROJECT, wait_until
from devstack.standins.aws.seed import REGION, clients
from devstack.standins.hosts.fleet import SSH_LOGIN, SSM_AGENT_PORT, generate_client_key, set_identities
from include.checks.catalogue import HOST_PROBES, SCRIPT
from include.core.host import Host

DONE = re.compile(rb"@@ec2audit-[0-9a-f]*-end")  # the script's end marker, whatever its nonce

PORT = 2222
PROFILES = ["compliant"] * 6 + ["auditd_stopped", "no_rules", "agent_stopped", "agent_not_shipping"]
MAX_HOSTS = 10_000
DAG_ID = "ec2_audit_compliance"
NAIVE_DAG_MAX = 1_000
SSM_METHODS = ("ssm", "dag-ssm")
SSM_MAX_HOSTS = 1_000  # hosts with an SSM agent listener (and registered in moto) when an SSM method runs


def addresses(n: int) -> list[str]:
    return [f"127.43.{i // 250}.{i % 250 + 1}" for i in range(min(n, MAX_HOSTS))]


def agent_key(root: Path) -> Path:
    """The SSM stand-in's agent key: only the fleet's agent listeners accept it (never the SSH listeners)."""
    return root / "ssm_agent_key"


def start_fleet(root: Path, n: int, latency_ms: int, agent_hosts: int = 0) -> tuple[subprocess.Popen, Path]:
    """The first `agent_hosts` hosts also answer an SSM "agent" on SSM_AGENT_PORT (agent_key(root))."""
    key = root / "client_key"
    if not key.exists():
        generate_client_key(key)
    if agent_hosts and not agent_key(root).exists():
        generate_client_key(agent_key(root))
    spec = [{"address": a, "port": PORT, "name": f"bench-{i}", "profile": PROFILES[i % len(PROFILES)],
             "identity": {"hostname": f"ip-{a.replace('.', '-')}"},
             **({"agent_port": SSM_AGENT_PORT} if i < agent_hosts else {})} for i, a in enumerate(addresses(n))]
    (root / "spec.json").write_text(json.dumps(spec))
    ready = root / "ready"
    ready.unlink(missing_ok=True)
    proc = procs.spawn([sys.executable, "-m", "devstack.standins.hosts.fleet", "--spec", str(root / "spec.json"),
                        "--state-dir", str(root / "state"), "--authorized-key", f"{key}.pub",
                        "--latency-ms", str(latency_ms), "--ready-file", str(ready),
                        *(["--ssm-agent-key", f"{agent_key(root)}.pub"] if agent_hosts else [])])
    wait_until(ready.exists, 600, "bench fleet", proc)
    return proc, key


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(name: str, n: int, run) -> dict:
    cpu, start = _cpu(), time.perf_counter()
    ok = run()
    wall, used = time.perf_counter() - start, _cpu() - cpu
    return {"method": name, "hosts": n, "ok": ok, "wall_s": round(wall, 2), "hosts_per_s": round(n / wall, 1),
            "cpu_ms_per_host": round(1000 * used / n, 2), "extrapolated": False}


def ours(hosts: list[str], key: Path) -> int:
    from include.reach.ssh import SshSettings, fan_out

    settings = SshSettings(username=SSH_LOGIN, key_file=str(key), port=PORT, host_key_policy="insecure",
                           connect_timeout=15, command_timeout=60, host_budget=90)
    done = []

    async def collect(host, outcome):
        done.append(outcome.transport_status is None and DONE.search(outcome.output) is not None)

    targets = [Host(instance_id=f"i-bench{i:08d}", region="us-east-1", account_id="", address=a, private_ip=a,
                    public_ip=None, private_dns=None, platform="linux", tags={}) for i, a in enumerate(hosts)]
    asyncio.run(fan_out(targets, settings, SCRIPT, {}, 100, collect))
    return sum(done)


def _paramiko_host(address: str, key: Path, commands: list[str] | None) -> bool:
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect(address, PORT, username=SSH_LOGIN, key_filename=str(key), timeout=15, banner_timeout=15,
                       auth_timeout=15, look_for_keys=False, allow_agent=False)
        if commands is None:  # the combined script on stdin
            stdin, stdout, _ = client.exec_command("/bin/sh -s", timeout=60)
            stdin.write(SCRIPT)
            stdin.channel.shutdown_write()
            return DONE.search(stdout.read()) is not None
        for command in commands:  # one exec per probe, as SSHHook.exec_ssh_client_command does
            _, stdout, _ = client.exec_command(command, timeout=60)
            stdout.read()
        return True
    except Exception:  # noqa: BLE001 - a failed host counts as not ok
        return False
    finally:
        client.close()


def paramiko_pool(hosts: list[str], key: Path, commands: list[str] | None, workers: int = 50) -> int:
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(lambda a: _paramiko_host(a, key, commands), hosts))


@dataclass
class Round:
    """One fleet size N of a bench run: what every method gets."""

    root: Path
    n: int
    hosts: list[str]
    key: Path
    commands: list[str]
    args: argparse.Namespace
    sim_pid: int
    agent_hosts: int = 0  # how many of the fleet's hosts answer an SSM agent (start_fleet)
    instances: list[tuple[str, str]] = field(default_factory=list)  # (instance id, address) once seeded
    _aws: BenchAws | None = None

    @property
    def ssm(self) -> bool:
        return 0 < self.n <= self.agent_hosts

    def aws(self) -> BenchAws:
        """moto + SMTP seeded with the same N instances, started on first use and shared by the DAG rows; with
        SSM methods chosen, every instance is also SSM-managed (its agent on the simulator)."""
        if self._aws is None:
            specs = [{"address": a, "name": f"bench-{i}", "profile": PROFILES[i % len(PROFILES)]}
                     for i, a in enumerate(self.hosts)]
            ssm = (agent_key(self.root), SSM_AGENT_PORT) if self.ssm else (None, 0)
            self._aws = BenchAws(self.root / f"aws-{self.n}").start(specs, *ssm)
            self.instances = [(h["instance_id"], h["address"]) for h in specs]
            # The fleet started before EC2 was seeded: each host now learns its instance id, so its agent
            # config names its own stream (else every host FAILs cwagent.log_stream_fresh, as until 2026-12-07).
            set_identities(self.root / "state", {a: i for i, a in self.instances})
        return self._aws

    def close(self) -> None:
        if self._aws is not None:
            self._aws.stop()


def _targets(r: Round) -> list[Host]:
    r.aws()
    return [Host(instance_id=i, region=REGION, account_id="", address=a, private_ip=a, public_ip=None,
                 private_dns=None, platform="linux", tags={}) for i, a in r.instances]


def _per_host(calls: dict[str, int], n: int) -> dict[str, float]:
    return {action: round(count / n, 3) for action, count in sorted(calls.items())}


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in sorted(after) if after[k] - before.get(k, 0)}


def ssm_transport_run(client, hosts: list[Host], settings) -> tuple[int, Counter]:
    """SsmTransport over these hosts, as one verify task runs it: (hosts whose whole output came back, calls).
    Bounded by the transport's own collect budget, plus a margin for the sends."""
    from include.reach.ssm import SsmTransport

    transport = SsmTransport(client, None, settings)
    done = []

    async def collect(host, outcome):
        done.append(outcome.transport_status is None and DONE.search(outcome.output) is not None)

    asyncio.run(asyncio.wait_for(transport.run(hosts, SCRIPT, collect), settings.collect_budget_s + 120))
    return sum(done), transport.calls


def ssm_client(endpoint: str):
    import boto3
    from botocore.config import Config

    from include.aws.clients import SSM_RETRIES

    return boto3.client("ssm", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=Config(**SSM_RETRIES))


def _ssm(r: Round) -> dict:
    """SSM Run Command over the same N hosts (one process, what one verify task does), the DAG's settings at
    concurrency 100: one SendCommand per host (its own nonce), results polled every 2 s, each host's output
    by GetCommandInvocation. moto plays SSM and every host's agent: its CPU is the stand-in's, not AWS's."""
    from include.reach.ssm import SsmSettings

    aws, hosts = r.aws(), _targets(r)
    client = ssm_client(aws.endpoint)  # made before the clock: one client per batch, as verify_batch
    settings = SsmSettings(command_timeout=60, delivery_timeout=90, max_concurrency=50)
    server0, moto0, sim0 = aws.ssm_calls(), process_cpu(aws.moto_pid), process_cpu(r.sim_pid)
    calls: Counter = Counter()

    def run() -> str:
        ok, counted = ssm_transport_run(client, hosts, settings)
        calls.update(counted)
        return f"{ok}/{len(hosts)}"

    row = measure("SSM Run Command (SsmTransport, one SendCommand per host, one process)", r.n, run)
    server = _diff(aws.ssm_calls(), server0)
    row.update(moto_cpu_s=round(process_cpu(aws.moto_pid) - moto0, 1), sim_cpu_s=round(process_cpu(r.sim_pid) - sim0, 1),
               api_calls=dict(sorted(calls.items())), server_calls=server, calls_per_host=_per_host(server, r.n),
               calls_match=server == dict(sorted(calls.items())))
    return row


def _dag_row(r: Round, method: str, label: str, transport: str = "ssh") -> dict:
    """This DAG end to end (discover → verify batches → evidence → report → email), on its own evidence table
    so each row is a first run (tofu pins included). Its evidence goes through the run's own writers — raw
    output to T_raw, observations by transaction, the day sealed in the store step — so their cost is in the
    wall and CPU; a first run keeps no versions (a same-day rerun would add one Put per host to each
    transaction). transport ssm: the SSM calls the server served."""
    from include.evidence.store import EvidenceStore

    aws = r.aws()
    table = f"bench_{method.replace('-', '_')}"
    run_root = r.root / f"{method}-{r.n}"
    shutil.rmtree(run_root, ignore_errors=True)  # a fresh metadata DB: XCom and task counts are this run's
    env = aws.airflow_env(run_root / "airflow", r.key)
    conf = {"recipients": ["secops@example.test"], "report_dir": str(run_root / "reports"),
            "concurrency": 100, "evidence_table": table, **({"transport": transport} if transport != "ssh" else {})}
    mails = aws.mails()
    ssm0 = aws.ssm_calls() if transport == "ssm" else {}
    cpu0 = aws.cpu_by_action()
    if method in ("dag", "dag-ssm"):
        run = bench_airflow.dag_test(env, DAG_ID, conf, r.args.dag_timeout, r.sim_pid, aws.moto_pid)
    else:
        run = bench_airflow.scheduler(env, DAG_ID, conf, r.args.dag_timeout, r.args.parallelism, r.sim_pid,
                                      aws.moto_pid)
    day = clock.today()
    items = EvidenceStore(clients(aws.endpoint, REGION)[2], table).day_items(day, fields=["status"])
    row = {"method": label, "hosts": r.n, "ok": f"{run['state']}, {len(items)} items, {aws.mails() - mails} email",
           "wall_s": round(run["wall_s"], 1), "hosts_per_s": round(r.n / run["wall_s"], 1),
           "cpu_ms_per_host": round(1000 * run["airflow_cpu_s"] / r.n, 2), "extrapolated": False}
    row.update({k: (round(v, 1) if isinstance(v, float) else v) for k, v in run.items()
                if k not in ("state", "wall_s")})
    if transport == "ssm":
        server = _diff(aws.ssm_calls(), ssm0)
        row.update(server_calls=server, calls_per_host=_per_host(server, r.n))
    row["moto_cpu_by_action"] = moto_cpu_delta(cpu0, aws.cpu_by_action())
    return row


def moto_cpu_delta(before: dict[str, dict], after: dict[str, dict], top: int = 12) -> dict[str, dict]:
    """What one run cost moto, per AWS action, the costliest first."""
    delta = {k: {"calls": v["calls"] - before.get(k, {}).get("calls", 0),
                 "cpu_s": round(v["cpu_s"] - before.get(k, {}).get("cpu_s", 0.0), 1)} for k, v in after.items()}
    ranked = sorted(((k, v) for k, v in delta.items() if v["calls"]), key=lambda kv: -kv[1]["cpu_s"])
    return dict(ranked[:top])


ANSIBLE = PROJECT / ".local" / "ansible-venv" / "bin" / "ansible"  # `make bench-tools`: bench-only install


def ansible_adhoc(root: Path, hosts: list[str], key: Path, forks: int = 50) -> int | None:
    """Ansible ad-hoc, `-m raw` with the same combined script as one command per host, forks 50."""
    if not ANSIBLE.exists():
        return None
    inventory = root / "inventory.ini"
    inventory.write_text("[fleet]\n" + "\n".join(hosts) + "\n\n[fleet:vars]\n"
                         f"ansible_port={PORT}\nansible_user={SSH_LOGIN}\nansible_ssh_private_key_file={key}\n"
                         "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'\n")
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_LOCAL_TEMP": str(root / "ansible-tmp"),
           "ANSIBLE_STDOUT_CALLBACK": "oneline"}
    done = subprocess.run([str(ANSIBLE), "all", "-i", str(inventory), "-m", "raw", "-a", SCRIPT, "-f", str(forks)],
                          env=env, capture_output=True, text=True, timeout=1800)
    return sum(1 for line in done.stdout.splitlines() if "| CHANGED |" in line and "rc=0" in line)


def _naive(r: Round) -> dict:
    sample = r.hosts[: min(r.n, r.args.naive_sample)]
    naive = measure(f"one host at a time, {len(r.commands)} commands/host (one SSHOperator task each)",
                    len(sample), lambda: sum(_paramiko_host(a, r.key, r.commands) for a in sample))
    per_host = naive["wall_s"] / len(sample)
    naive.update(hosts=r.n, wall_s=round(per_host * r.n, 1), hosts_per_s=round(1 / per_host, 1),
                 ok=f"{naive['ok']}/{len(sample)} sampled", extrapolated=len(sample) < r.n)
    return naive


def _ansible(r: Round) -> dict:
    row = measure("Ansible ad-hoc -m raw (combined script), forks 50", r.n, lambda: ansible_adhoc(r.root, r.hosts, r.key))
    row["cpu_ms_per_host"] = None  # its work is in child processes, not counted here
    return row


def naive_dag(r: Round) -> dict:
    """The naive DAG (devstack/bench/dags): one mapped SSHHook task per host, under `dag.test()`, capped at
    --naive-cap seconds; if the cap stops it, the finished task count gives the rate and the total is
    extrapolated (marked so)."""
    run_root = r.root / f"naive-dag-{r.n}"
    shutil.rmtree(run_root, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "AIRFLOW_HOME": str(run_root / "airflow"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "devstack" / "bench" / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "BENCH_NAIVE_HOSTS": json.dumps(r.hosts),
           "AIRFLOW_CONN_BENCH_SSH": json.dumps({"conn_type": "ssh", "login": SSH_LOGIN, "port": PORT, "extra": {
               "key_file": str(r.key), "no_host_key_check": True, "look_for_keys": False, "allow_host_key_change": True}})}
    (run_root / "airflow").mkdir(parents=True)
    bench_airflow.migrate(env)
    start, capped = time.perf_counter(), False
    proc = procs.spawn([sys.executable, "-c", bench_airflow.DAG_TEST_CHILD, env["AIRFLOW__CORE__DAGS_FOLDER"],
                        "naive_ssh_per_host", "{}"], env=env)
    try:
        proc.wait(timeout=r.args.naive_cap)
    except subprocess.TimeoutExpired:
        capped = True
    finally:
        procs.stop_group(proc)
    wall = time.perf_counter() - start
    with sqlite3.connect(run_root / "airflow" / "airflow.db") as db:
        done = db.execute("select count(*) from task_instance where task_id='check' and state='success'").fetchone()[0]
    per_host = wall / max(done, 1)
    return {"method": "naive DAG: one mapped SSHHook task per host, dag.test()", "hosts": r.n,
            "ok": f"{done} tasks done" + (f" in the {r.args.naive_cap:.0f} s cap" if capped else ""),
            "wall_s": round(per_host * r.n if capped else wall, 1), "hosts_per_s": round(1 / per_host, 2),
            "cpu_ms_per_host": None, "extrapolated": capped}


METHODS = {
    "ours": lambda r: measure("asyncssh fan-out, combined script (this project)", r.n, lambda: ours(r.hosts, r.key)),
    "pool": lambda r: measure("paramiko pool ×50, combined script", r.n, lambda: paramiko_pool(r.hosts, r.key, None)),
    "pool-commands": lambda r: measure(f"paramiko pool ×50, {len(r.commands)} commands/host (SSHHook style)", r.n,
                                       lambda: paramiko_pool(r.hosts, r.key, r.commands)),
    "naive": _naive,
    "ansible": _ansible,
    "dag": lambda r: _dag_row(r, "dag", "this DAG, dag.test() end to end (discover, verify, evidence, report, email)"),
    "scheduler": lambda r: _dag_row(r, "scheduler", "this DAG, airflow standalone: scheduler + LocalExecutor, SQLite"),
    "naive-dag": naive_dag,
    "ssm": _ssm,
    "dag-ssm": lambda r: _dag_row(r, "dag-ssm", "this DAG, dag.test(), transport=ssm (SSM Run Command)", "ssm"),
}


def chart(results: list[dict], path: Path) -> None:
    """Wall time against N for each method (log-log), extrapolated points hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    for method in dict.fromkeys(r["method"] for r in results):
        points = sorted((r["hosts"], r["wall_s"], r["extrapolated"]) for r in results if r["method"] == method)
        line, = ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=method)
        for n, wall, extrapolated in points:
            if extrapolated:
                ax.plot([n], [wall], marker="o", markerfacecolor="white", color=line.get_color())
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("hosts (N)")
    ax.set_ylabel("wall time, s (log)")
    ax.set_title("Checking N hosts: wall time by method (hollow = extrapolated)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _line(r: dict) -> str:
    extra = {k: r[k] for k in ("moto_cpu_s", "sim_cpu_s", "process_peak_rss_mb", "task_peak_rss_mb", "xcom_bytes",
                               "database_locked", "max_parallel_verify", "phases_s", "calls_per_host",
                               "calls_match") if k in r}
    return (f"{r['hosts']:>6} {r['method']:<75} {r['wall_s']:>8}s {r['hosts_per_s']:>8}/s "
            f"{str(r['cpu_ms_per_host']):>6} ms CPU/host  ok {r['ok']}{'  (extrapolated)' if r['extrapolated'] else ''}"
            + (f"  {extra}" if extra else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="100,1000", help="comma-separated fleet sizes (≤ 10,000)")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--naive-sample", type=int, default=20, help="hosts the one-at-a-time design really checks")
    parser.add_argument("--naive-cap", type=float, default=150, help="seconds the naive DAG may run per N")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    parser.add_argument("--parallelism", type=int, default=4, help="LocalExecutor parallelism (as `make up`)")
    parser.add_argument("--dag-only-hosts", default="", help="extra fleet sizes for the DAG rows alone (e.g. the "
                        "2,000-host check of the embedded SQLite setup)")
    parser.add_argument("--dag-timeout", type=float, default=1800, help="seconds one DAG run may take")
    parser.add_argument("--out", type=Path, default=PROJECT / ".local" / "bench",
                        help="folder for the fleet, the runs, results.json and chart.png")
    args = parser.parse_args(argv)
    chosen = [m for m in args.methods.split(",") if m]
    unknown = set(chosen) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    plain = {min(int(x), MAX_HOSTS) for x in args.hosts.split(",") if x}
    dag_only = {min(int(x), MAX_HOSTS) for x in args.dag_only_hosts.split(",") if x}
    sizes = sorted({min(int(x), MAX_HOSTS) for x in args.hosts.split(",")} | dag_only)
    root = args.out
    root.mkdir(parents=True, exist_ok=True)
    commands = [p.command for p in HOST_PROBES]
    agent_hosts = min(max(plain), SSM_MAX_HOSTS) if set(chosen) & set(SSM_METHODS) and plain else 0
    proc, key = start_fleet(root, max(sizes), args.latency_ms, agent_hosts)
    results = []
    try:
        for n in sizes:
            rnd = Round(root, n, addresses(n), key, commands, args, proc.pid, agent_hosts)
            try:
                for method in chosen:
                    if n in dag_only and n not in plain and method not in ("dag", "scheduler"):
                        continue
                    if method == "naive-dag" and n > NAIVE_DAG_MAX:
                        continue  # the issue asks for it at 100 and 1,000; its cap would only extrapolate
                    if method in SSM_METHODS and not rnd.ssm:
                        print(f"{method}: only up to {SSM_MAX_HOSTS} hosts (the stand-in's agents); skipped at {n}")
                        continue
                    if method == "ansible" and not ANSIBLE.exists():
                        print("ansible: not installed (make bench-tools); skipped")
                        continue
                    r = METHODS[method](rnd)
                    results.append(r)
                    print(_line(r), flush=True)
            finally:
                rnd.close()
    finally:
        procs.stop_group(proc)
    machine = {"cores": os.cpu_count(), "python": sys.version.split()[0], "latency_ms": args.latency_ms}
    (root / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    if results:
        chart(results, root / "chart.png")
    print(f"results: {root / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
