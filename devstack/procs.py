"""Start a command in its own process group, wait for it to be ready, and stop that group: the one way
devstack does all three.

Every helper process (moto, the simulated fleet, the SMTP sink, Airflow components) is started in a new
session so it and its children can be stopped together — by the PID we were given, never by name.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll a started process's readiness (every 0.1 s): TimeoutError after `timeout`, RuntimeError if `proc`
    exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not ready after {timeout:g}s")


def wait_for(predicate, timeout: float, what: str, diagnose=lambda: "", every: float = 0.5):
    """Poll until predicate() returns something truthy (returned); bounded in time, fails with a diagnosis
    (AssertionError: the tests' and e2e drivers' waits on what a running stack did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:g}s. {diagnose()}")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except Exception:  # noqa: BLE001 - not up yet
        return False


def spawn(args: list[str], log: Path | None = None, env: dict | None = None, cwd: Path = PROJECT, *,
          log_mode: str = "ab", inherit_output: bool = False) -> subprocess.Popen:
    """Run `args` in a new process group; output appended to `log` (`log_mode="wb"`: the log starts empty),
    else discarded, or with `inherit_output` left on our own terminal (`make up` shows Airflow's login)."""
    if inherit_output:
        return subprocess.Popen(args, cwd=cwd, env=env, start_new_session=True)
    out = open(log, log_mode) if log else subprocess.DEVNULL
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Signal the process group we started, then SIGKILL it if it has not gone within `timeout`."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:  # it went between poll() and killpg()
        proc.wait(timeout=10)


def stop_groups(started: list[subprocess.Popen], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """stop_group for several process groups at once: signal them all, then wait for each (SIGKILL the groups
    still there after `timeout`), so their shutdowns overlap instead of adding up."""
    running = [p for p in started if p.poll() is None]
    for proc in running:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    for proc in running:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


def serve_until_signalled(stop, ready_file: str | None = None) -> None:
    """The main loop of a devstack server process (SMTP sink, webhook sink) that is already serving: write
    its PID to `ready_file` (what the starter waits for), wait for SIGTERM/SIGINT, then call `stop()`."""
    import threading

    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    if ready_file:
        Path(ready_file).write_text(str(os.getpid()))
    stopped.wait()
    stop()
