"""One way to start the local AWS stand-in (the moto server process, devstack/moto_server.py) and stop it.

Tests, the bench and the local stack all use it, so the command, the readiness wait and the clean stop are
written once. The process is ours (its own session), stopped by PID, never by name.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.stack import PROJECT, _http_ok, free_port, wait_until


def spawn_moto(log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """Start a moto server on a free loopback port; returns (process, endpoint) once it answers."""
    port = free_port()
    out = open(log, "ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "devstack.moto_server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _http_ok(f"{endpoint}/moto-api/"), 30, "moto server", proc)
    except BaseException:
        stop(proc)
        raise
    return proc, endpoint


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL after `timeout` — only this process, which we started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@contextmanager
def moto(log: Path | None = None) -> Iterator[str]:
    """`with moto() as endpoint:` a fresh local AWS for the block."""
    proc, endpoint = spawn_moto(log)
    try:
        yield endpoint
    finally:
        stop(proc)
