"""Plays the CloudWatch agent for one log file of a host: tails it and ships each new line to its stream.

Like the agent (file_path → log_group_name / log_stream_name, force_flush_interval ~1 s) it ships lines added
after it started, in order, each with the time the record itself carries (`msg=audit(<epoch>.<ms>:<serial>)`)
or, failing that, the time it read it. Used by real sshd hosts (SshdHost.ship_audit_log) and by tests.
"""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import boto3

FLUSH_INTERVAL_S = 0.5
_AUDIT_TIME = re.compile(r"msg=audit\((\d+)\.(\d{1,3})\d*:\d+\)")


def record_millis(line: str, default_ms: int) -> int:
    """The millisecond timestamp an audit record carries, else `default_ms`."""
    found = _AUDIT_TIME.search(line)
    return int(found.group(1)) * 1000 + int(found.group(2).ljust(3, "0")) if found else default_ms


class LogShipper:
    def __init__(self, path: Path, endpoint: str, group: str, stream: str, region: str = "us-east-1") -> None:
        self.path, self.group, self.stream = Path(path), group, stream
        self.client = boto3.client("logs", endpoint_url=endpoint, region_name=region, aws_access_key_id="testing",
                                   aws_secret_access_key="testing")
        self.offset = self.path.stat().st_size if self.path.exists() else 0  # new lines only, as the agent
        self.shipped: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"log-agent-{stream}", daemon=True)

    def start(self) -> "LogShipper":
        try:
            self.client.create_log_group(logGroupName=self.group)
        except self.client.exceptions.ResourceAlreadyExistsException:
            pass
        try:
            self.client.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        except self.client.exceptions.ResourceAlreadyExistsException:
            pass
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _new_lines(self) -> tuple[list[str], int]:
        """The complete lines after the offset, and the offset after them."""
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return [], self.offset
        complete = chunk[: chunk.rfind(b"\n") + 1]  # a line still being written waits for the next flush
        return [line for line in complete.decode("utf-8", "replace").splitlines() if line], self.offset + len(complete)

    def flush(self) -> None:
        lines, offset = self._new_lines()
        if not lines:
            self.offset = offset
            return
        now_ms = int(time.time() * 1000)
        events = [{"timestamp": record_millis(line, now_ms), "message": line} for line in lines]
        # PutLogEvents wants chronological order within a call; the file's order is kept where the times allow
        events.sort(key=lambda e: e["timestamp"])
        for start in range(0, len(events), 1000):
            self.client.put_log_events(logGroupName=self.group, logStreamName=self.stream,
                                       logEvents=events[start:start + 1000])
        self.offset = offset  # only once shipped: a failed call is retried at the next flush
        self.shipped += lines

    def _run(self) -> None:
        while not self._stop.wait(FLUSH_INTERVAL_S):
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - the agent retries at its next flush, as the real one does
                print(f"log agent {self.stream}: {type(exc).__name__}: {exc}", flush=True)
        try:
            self.flush()
        except Exception:  # noqa: BLE001
            pass
