"""One way to start the local AWS stand-in (the moto server process, devstack/standins/aws/server.py) and stop it.

Tests, the bench and the local stack all use it, so the command, the readiness wait and the clean stop are
written once. The process is ours (its own session), stopped by PID, never by name.
"""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack import procs
from devstack.procs import free_port, http_ok, wait_until


def spawn_moto(log: Path | None = None, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """Start a moto server on a free loopback port; returns (process, endpoint) once it answers.

    `env`: variables added to this process's environment for the server (e.g. EC2AUDIT_EIC_KEY_DIR)."""
    port = free_port()
    proc = procs.spawn([sys.executable, "-m", "devstack.standins.aws.server", "-H", "127.0.0.1", "-p", str(port)], log,
                       {**os.environ, **env} if env else None)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{endpoint}/moto-api/"), 30, "moto server", proc)
    except BaseException:
        procs.stop_group(proc, timeout=10)
        raise
    return proc, endpoint


@contextmanager
def moto(log: Path | None = None, env: dict[str, str] | None = None) -> Iterator[str]:
    """`with moto() as endpoint:` a fresh local AWS for the block."""
    proc, endpoint = spawn_moto(log, env)
    try:
        yield endpoint
    finally:
        procs.stop_group(proc, timeout=10)


@contextmanager
def moto_behind(proxy) -> Iterator[tuple[str, str]]:
    """A fresh moto server and a devstack.standins.aws.fault_proxy.FaultProxy subclass in front of it:
    yields (direct endpoint, proxied endpoint)."""
    with moto() as direct:
        server, proxied = proxy.start(direct)
        try:
            yield direct, proxied
        finally:
            server.shutdown()


def dynamodb(endpoint: str):
    """A boto3 DynamoDB resource on a local endpoint (test credentials)."""
    import boto3

    return boto3.resource("dynamodb", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
