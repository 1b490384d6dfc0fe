"""`make bench-quick`: SSH fan-out side by side, in ONE run, on the same simulated fleet and the same checks.

    .venv/bin/python -m devstack.bench [--hosts 100,1000] [--latency-ms 20] [--naive-sample 20]

Starts one simulator process serving N hosts on 127.43.x.y (a range no test uses), each answering with a
realistic health profile after `latency-ms` per command (a network round trip), then checks the whole fleet:

1. this project's transport (`include.ssh_transport.fan_out`, asyncssh, one combined script per host,
   100 sessions at once — one verify task);
2. a 50-thread paramiko pool running the same combined script;
3. the same pool running each probe as its own command (what SSHHook/SSHOperator would do);
4. Ansible ad-hoc (`-m raw`, the combined script as one command per host, forks 50), when
   `make bench-tools` has installed ansible-core into its own venv (a bench-only dependency);
5. the naive design — one host at a time, one paramiko connection, one command per probe (what one mapped
   SSHOperator task does, before Airflow's own per-task overhead) — timed on a sample and extrapolated
   (marked so);
6. this DAG end to end under `dag.test()`, discovering the same N instances from a moto server.

Reports wall time, hosts/s and client CPU per host; writes .local/bench/results.json. Bounded: every method
has a per-host timeout and the fleet size is capped at 10,000.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from devstack.fleet import generate_client_key
from devstack.stack import PROJECT, SSH_LOGIN, wait_until
from include.checks.catalogue import HOST_PROBES, SCRIPT
from include.models import Host

PORT = 2222
PROFILES = ["compliant"] * 6 + ["auditd_stopped", "no_rules", "agent_stopped", "agent_not_shipping"]
MAX_HOSTS = 10_000


def addresses(n: int) -> list[str]:
    return [f"127.43.{i // 250}.{i % 250 + 1}" for i in range(min(n, MAX_HOSTS))]


def start_fleet(root: Path, n: int, latency_ms: int) -> tuple[subprocess.Popen, Path]:
    key = root / "client_key"
    if not key.exists():
        generate_client_key(key)
    spec = [{"address": a, "port": PORT, "name": f"bench-{i}", "profile": PROFILES[i % len(PROFILES)],
             "identity": {"hostname": f"ip-{a.replace('.', '-')}"}} for i, a in enumerate(addresses(n))]
    (root / "spec.json").write_text(json.dumps(spec))
    ready = root / "ready"
    ready.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "devstack.fleet", "--spec", str(root / "spec.json"),
                             "--state-dir", str(root / "state"), "--authorized-key", f"{key}.pub",
                             "--latency-ms", str(latency_ms), "--ready-file", str(ready)],
                            cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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
    from include.ssh_transport import SshSettings, fan_out

    settings = SshSettings(username=SSH_LOGIN, key_file=str(key), port=PORT, host_key_policy="insecure",
                           connect_timeout=15, command_timeout=60, host_budget=90)
    done = []

    async def collect(host, outcome):
        done.append(outcome.transport_status is None and b"@@ec2audit-end" in outcome.output)

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
            return b"@@ec2audit-end" in stdout.read()
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


def dag_run(root: Path, n: int, key: Path) -> dict:
    """This DAG, end to end through real Airflow task execution (`dag.test()` in a fresh process): discovery
    from a moto server holding the N instances, mapped verify batches, evidence, report and email."""
    from devstack.aws_seed import clients, seed_fleet
    from devstack.stack import REGION, _http_ok, free_port

    run_root = root / f"dag-{n}"
    import shutil

    shutil.rmtree(run_root, ignore_errors=True)
    run_root.mkdir(parents=True)
    moto_port, smtp_port = free_port(), free_port()
    endpoint = f"http://127.0.0.1:{moto_port}"
    procs = [subprocess.Popen([sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(moto_port)],
                              cwd=PROJECT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True),
             subprocess.Popen([sys.executable, "-m", "devstack.smtp_sink", "--host", "127.0.0.1", "--port",
                               str(smtp_port), "--maildir", str(run_root / "mail")], cwd=PROJECT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)]
    try:
        wait_until(lambda: _http_ok(f"{endpoint}/moto-api/"), 30, "moto server", procs[0])
        hosts = [{"address": a, "name": f"bench-{i}", "profile": PROFILES[i % len(PROFILES)]}
                 for i, a in enumerate(addresses(n))]
        seed_fleet(endpoint, hosts, REGION, cidrs=("127.43.0.0/16", "127.43.0.0/16"))
        env = {**os.environ, "PYTHONPATH": str(PROJECT), "AIRFLOW_HOME": str(run_root / "airflow"),
               "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "dags"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
               "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "login": "testing", "password": "testing",
                                                       "extra": {"endpoint_url": endpoint, "region_name": REGION}}),
               "AIRFLOW_CONN_EC2_AUDIT_SSH": json.dumps({"conn_type": "ssh", "login": SSH_LOGIN, "port": PORT,
                                                         "extra": {"key_file": str(key), "host_key_policy": "tofu"}}),
               "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": smtp_port,
                                                        "extra": {"disable_ssl": True, "disable_tls": True}})}
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
        conf = {"recipients": ["secops@example.test"], "report_dir": str(run_root / "reports"), "concurrency": 100}
        child = ("import json,sys\nfrom datetime import datetime, timezone\n"
                 "from airflow.dag_processing.dagbag import DagBag\n"
                 "dag = DagBag(dag_folder=sys.argv[1]).get_dag('ec2_audit_compliance')\n"
                 "run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0), run_conf=json.loads(sys.argv[2]))\n"
                 "print('STATE', run.state)\n"
                 "import resource\nprint('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n")
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", child, str(PROJECT / "dags"), json.dumps(conf)], env=env,
                              capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - start
        from include.evidence import EvidenceStore

        day = time.strftime("%Y-%m-%d", time.gmtime())
        items = EvidenceStore(clients(endpoint, REGION)[2], "ec2_audit_evidence").day_items(day)
        state = "success" if "STATE success" in done.stdout else "failed"
        rss_kb = next((int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("MAXRSS_KB")), 0)
        import sqlite3

        with sqlite3.connect(run_root / "airflow" / "airflow.db") as db:  # every XCom this run pushed
            xcom_bytes = db.execute("select coalesce(sum(length(value)), 0) from xcom").fetchone()[0]
        return {"method": "this DAG, dag.test() end to end (discover, verify, evidence, report, email)", "hosts": n,
                "ok": f"{state}, {len(items)} items, {len(list((run_root / 'mail').glob('*.eml')))} email",
                "wall_s": round(wall, 1), "hosts_per_s": round(n / wall, 1), "cpu_ms_per_host": None,
                "extrapolated": False, "peak_rss_mb": round(rss_kb / 1024), "xcom_bytes": xcom_bytes}
    finally:
        for proc in procs:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)


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


def _naive(root, n, hosts, key, commands, args) -> dict:
    sample = hosts[: min(n, args.naive_sample)]
    naive = measure(f"one host at a time, {len(commands)} commands/host (one SSHOperator task each)",
                    len(sample), lambda: sum(_paramiko_host(a, key, commands) for a in sample))
    per_host = naive["wall_s"] / len(sample)
    naive.update(hosts=n, wall_s=round(per_host * n, 1), hosts_per_s=round(1 / per_host, 1),
                 ok=f"{naive['ok']}/{len(sample)} sampled", extrapolated=len(sample) < n)
    return naive


def _ansible(root, n, hosts, key, commands, args) -> dict:
    r = measure("Ansible ad-hoc -m raw (combined script), forks 50", n, lambda: ansible_adhoc(root, hosts, key))
    r["cpu_ms_per_host"] = None  # its work is in child processes, not counted here
    return r


def naive_dag(root: Path, n: int, hosts: list[str], key: Path, cap_s: float) -> dict:
    """The naive DAG (devstack/bench_dags): one mapped SSHHook task per host, under `dag.test()`, capped at
    `cap_s`; if the cap stops it, the finished task count gives the rate and the total is extrapolated."""
    import shutil
    import sqlite3

    run_root = root / f"naive-dag-{n}"
    shutil.rmtree(run_root, ignore_errors=True)
    run_root.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(PROJECT), "AIRFLOW_HOME": str(run_root / "airflow"),
           "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT / "devstack" / "bench_dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "BENCH_NAIVE_HOSTS": json.dumps(hosts),
           "AIRFLOW_CONN_BENCH_SSH": json.dumps({"conn_type": "ssh", "login": SSH_LOGIN, "port": PORT, "extra": {
               "key_file": str(key), "no_host_key_check": True, "look_for_keys": False, "allow_host_key_change": True}})}
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    child = ("import sys\nfrom airflow.dag_processing.dagbag import DagBag\n"
             "run = DagBag(dag_folder=sys.argv[1]).get_dag('naive_ssh_per_host').test()\n"
             "print('STATE', run.state)\n")
    start, capped = time.perf_counter(), False
    proc = subprocess.Popen([sys.executable, "-c", child, str(PROJECT / "devstack" / "bench_dags")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=cap_s)
    except subprocess.TimeoutExpired:
        capped = True
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    wall = time.perf_counter() - start
    with sqlite3.connect(run_root / "airflow" / "airflow.db") as db:
        done = db.execute("select count(*) from task_instance where task_id='check' and state='success'").fetchone()[0]
    per_host = wall / max(done, 1)
    return {"method": "naive DAG: one mapped SSHHook task per host, dag.test()", "hosts": n,
            "ok": f"{done} tasks done" + (f" in the {cap_s:.0f} s cap" if capped else ""),
            "wall_s": round(per_host * n if capped else wall, 1), "hosts_per_s": round(1 / per_host, 2),
            "cpu_ms_per_host": None, "extrapolated": capped}


METHODS = {
    "ours": lambda root, n, hosts, key, commands, args: measure(
        "asyncssh fan-out, combined script (this project)", n, lambda: ours(hosts, key)),
    "pool": lambda root, n, hosts, key, commands, args: measure(
        "paramiko pool ×50, combined script", n, lambda: paramiko_pool(hosts, key, None)),
    "pool-commands": lambda root, n, hosts, key, commands, args: measure(
        f"paramiko pool ×50, {len(commands)} commands/host (SSHHook style)", n,
        lambda: paramiko_pool(hosts, key, commands)),
    "naive": _naive,
    "ansible": _ansible,
    "dag": lambda root, n, hosts, key, commands, args: dag_run(root, n, key),
    "naive-dag": lambda root, n, hosts, key, commands, args: naive_dag(root, n, hosts, key, args.naive_cap),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="100,1000", help="comma-separated fleet sizes (≤ 10,000)")
    parser.add_argument("--latency-ms", type=int, default=20)
    parser.add_argument("--naive-sample", type=int, default=20, help="hosts the one-at-a-time design really checks")
    parser.add_argument("--naive-cap", type=float, default=150, help="seconds the naive DAG may run per N")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"subset of {','.join(METHODS)}")
    args = parser.parse_args(argv)
    chosen = [m for m in args.methods.split(",") if m]
    unknown = set(chosen) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {list(METHODS)}")
    sizes = sorted({min(int(x), MAX_HOSTS) for x in args.hosts.split(",")})
    root = PROJECT / ".local" / "bench"
    root.mkdir(parents=True, exist_ok=True)
    commands = [p.command for p in HOST_PROBES]
    proc, key = start_fleet(root, max(sizes), args.latency_ms)
    results = []
    try:
        for n in sizes:
            hosts = addresses(n)
            for method in chosen:
                if method == "ansible" and not ANSIBLE.exists():
                    print("ansible: not installed (make bench-tools); skipped")
                    continue
                r = METHODS[method](root, n, hosts, key, commands, args)
                results.append(r)
                print(f"{r['hosts']:>6} {r['method']:<75} {r['wall_s']:>8}s {r['hosts_per_s']:>8}/s "
                      f"{str(r['cpu_ms_per_host']):>6} ms CPU/host  ok {r['ok']}{'  (extrapolated)' if r['extrapolated'] else ''}"
                      + (f"  peak RSS {r['peak_rss_mb']} MB, XCom {r['xcom_bytes']} B" if "peak_rss_mb" in r else ""),
                      flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    machine = {"cores": os.cpu_count(), "python": sys.version.split()[0], "latency_ms": args.latency_ms}
    (root / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    if results:
        chart(results, root / "chart.png")
    print(f"results: {root / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
