"""What the integration tests need from the machine, as pytest markers (registered in pytest.ini, applied by
tests/conftest.py before each test).

A component .ci/run installs (sshd, sudo, auditd, Chromium, PostgreSQL, Redis, and the Python requirements
`make test` installs) may be missing on a developer's machine: the test skips there. Under CI=true it is an
error instead, naming the component and how .ci/run installs it — CI that silently skips them proves nothing.
A kernel capability the machine may lack (the kernel audit, e.g. in a container) is always a skip, whose
reason is what the probe answered.
"""
from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Requirement:
    what: str
    install: str  # how .ci/run gets it; empty for a capability
    probe: Callable[[], tuple[bool, str]]  # (present, what the probe answered)
    capability: bool = False  # of the kernel: no install can provide it, so always a skip


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


CHROMIUM = chromium_path()


@functools.cache
def _sshd() -> tuple[bool, str]:
    from devstack.standins.hosts.sshd_host import sshd_available

    return sshd_available()


def _chromium() -> tuple[bool, str]:
    return (True, CHROMIUM) if CHROMIUM else (False, "no chromium or chromium-browser on PATH, no /usr/bin/chromium")


@functools.cache
def _postgres_redis() -> tuple[bool, str]:
    from devstack.run import celery_e2e

    if celery_e2e.available():
        return True, ""
    return False, (f"needs root, {celery_e2e.PG_BIN / 'postgres'} and redis-server on PATH "
                   f"(euid {os.geteuid()}, postgres {'found' if (celery_e2e.PG_BIN / 'postgres').exists() else 'missing'}, "
                   f"redis-server {'found' if shutil.which('redis-server') else 'missing'})")


def _edge_provider() -> tuple[bool, str]:
    from devstack.run import edge_e2e

    return edge_e2e.available()


AUDITCTL = "/usr/sbin/auditctl"


def _auditd() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "needs root"
    return (True, AUDITCTL) if os.path.exists(AUDITCTL) else (False, f"{AUDITCTL} missing")


@functools.cache
def _kernel_audit() -> tuple[bool, str]:
    """The kernel audit answers `auditctl -s` with its status (devstack.standins.hosts.sshd_host.RealAuditd reads the same);
    in a container without CAP_AUDIT_CONTROL, or a kernel built without audit, it does not."""
    if not os.path.exists(AUDITCTL):
        return False, f"{AUDITCTL} missing"
    try:
        out = subprocess.run([AUDITCTL, "-s"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`auditctl -s` failed: {type(exc).__name__}: {exc}"
    answer = " ".join((out.stderr or out.stdout).split())[:200] or "no output"
    if out.returncode != 0 or not any(line.split()[:1] == ["pid"] for line in out.stdout.splitlines()):
        return False, f"`auditctl -s` exited {out.returncode}: {answer}"
    return True, answer


SSHD = Requirement("real OpenSSH sshd hosts (sshd, sudo, unshare, root)", "apt-get install openssh-server sudo", _sshd)
CHROMIUM_REQ = Requirement("Debian chromium", "apt-get install chromium", _chromium)
POSTGRES_REDIS = Requirement("PostgreSQL and Redis (CeleryExecutor)", "apt-get install postgresql redis-server",
                             _postgres_redis)
EDGE = Requirement("the Edge provider (apache-airflow-providers-edge3)", "make test: pip install -r requirements-dev.txt",
                   _edge_provider)
AUDITD = Requirement("auditd (auditctl)", "apt-get install auditd", _auditd)
KERNEL_AUDIT = Requirement("the kernel audit", "", _kernel_audit, capability=True)

# Marker → what it needs, checked in order (the auditd package before the kernel capability it reaches).
MARKERS: dict[str, tuple[Requirement, ...]] = {
    "needs_sshd": (SSHD,),
    "needs_chromium": (CHROMIUM_REQ,),
    "needs_postgres_redis": (POSTGRES_REDIS,),
    "needs_edge_provider": (EDGE,),
    "needs_kernel_audit": (AUDITD, KERNEL_AUDIT),
}


def in_ci(environ: Mapping[str, str]) -> bool:
    return environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def gate(item, environ: Mapping[str, str] = os.environ,
         markers: Mapping[str, tuple[Requirement, ...]] = MARKERS) -> None:
    """Skip (or, for a component under CI, fail) `item` when something its markers need is missing."""
    for mark in item.iter_markers():
        for req in markers.get(mark.name, ()):
            present, answer = req.probe()
            if present:
                continue
            if req.capability:  # no install provides it: even CI can only say the machine lacks it
                pytest.skip(f"{req.what} unavailable: {answer}")
            reason = f"{req.what} missing: {answer} (.ci/run installs it: {req.install})"
            if in_ci(environ):
                pytest.fail(f"CI=true: a test marked {mark.name} must run, not skip: {reason}", pytrace=False)
            pytest.skip(reason)
