"""What each check costs on a real host: per-probe time inside one session on a real OpenSSH sshd host.

    sudo .venv/bin/python -m devstack.bench.probe_cost [--runs 15]

Starts the "compliant" real sshd host (mount namespace, real kernel audit where available), then times:
the SSH connection, an empty script (prelude only), each probe alone, and the whole combined script.
A probe's cost = median(probe alone) − median(empty script). Needs root (see devstack/standins/hosts/sshd_host.py).
"""
from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import asyncssh

from devstack.standins.hosts.fleet import generate_client_key
from devstack.standins.hosts.sshd_host import LOGIN, RealAuditd, ensure_login_user, sshd_available, start_sshd_host
from include.checks import probes
from include.checks.catalogue import CATALOGUE, HOST_PROBES, SCRIPT

ADDRESS, PORT = "127.42.7.1", 2222


async def _time(conn, script: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        await conn.run("/bin/sh -s", input=script, check=False)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


async def measure(key_path: Path, runs: int) -> dict[str, float]:
    key = asyncssh.read_private_key(key_path)
    connects = []
    for _ in range(runs):
        start = time.perf_counter()
        async with asyncssh.connect(ADDRESS, PORT, username=LOGIN, client_keys=[key], known_hosts=None):
            connects.append(time.perf_counter() - start)
    results = {"ssh connect + auth": statistics.median(connects) * 1000}
    async with asyncssh.connect(ADDRESS, PORT, username=LOGIN, client_keys=[key], known_hosts=None) as conn:
        end = probes.SCRIPT_END
        base = await _time(conn, probes.PRELUDE + end, runs)
        results["empty script (prelude)"] = base
        for probe in HOST_PROBES + (probes.CANARY,):
            results[f"probe {probe.name}"] = await _time(conn, probes.build_script((probe,)), runs) - base
        results["whole combined script"] = await _time(conn, SCRIPT, runs)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    ok, why = sshd_available()
    if not ok:
        raise SystemExit(f"cannot run: {why}")
    ensure_login_user()
    with tempfile.TemporaryDirectory() as tmp, RealAuditd() as auditd:
        root = Path(tmp)
        public = generate_client_key(root / "id")
        host = start_sshd_host(root / "host", ADDRESS, PORT, public, "compliant", "i-cost",
                               fake_auditctl=not auditd.available)
        try:
            results = asyncio.run(measure(root / "id", args.runs))
        finally:
            host.stop()
    users = {}
    for check in CATALOGUE:
        for probe in check.probes:
            users.setdefault(probe.name, []).append(check.id)
    print(f"| what | median ms ({args.runs} runs) | checks that use it |\n| --- | ---: | --- |")
    for name, ms in results.items():
        probe = name.removeprefix("probe ")
        print(f"| {name} | {ms:.1f} | {', '.join(users.get(probe, [])) or '—'} |")


if __name__ == "__main__":
    main()
