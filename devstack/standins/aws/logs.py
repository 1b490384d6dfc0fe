"""CloudWatch Logs as AWS behaves, where moto differs.

Ingestion time: moto stamps lastIngestionTime with the wall clock of the write, so a stream seeded with an
event from 10 hours ago would still look fresh. Here ingestion follows the newest event's own timestamp, as it
does for a real agent that ships events as they happen; that lets the demo hold a genuinely stale stream.
FilterLogEvents reads a pattern of several quoted terms as AWS does (all must appear), where moto matches
nothing. Subscription filters with a Lambda destination deliver what their pattern matches, asynchronously,
to the function's own code (subscriptions_deliver), as CloudWatch Logs does.
"""
from __future__ import annotations

from datetime import datetime, timezone


def ingestion_follows_events() -> None:
    from moto.logs import models

    original = models.LogStream.put_log_events

    def put_log_events(self, log_events):
        token = original(self, log_events)
        newest = max((e["timestamp"] for e in log_events), default=None)
        if newest is not None:
            moment = datetime.fromtimestamp(newest / 1000, tz=timezone.utc).replace(tzinfo=None)
            self.last_ingestion_time = min(self.last_ingestion_time, moment)
        return token

    models.LogStream.put_log_events = put_log_events


def filter_terms_as_aws() -> None:
    """FilterLogEvents: moto reads `"a" "b"` as one quoted phrase (the text between the outer quotes), which
    nothing matches. AWS reads a space-separated list of terms, quoted or not, that must all appear. Patterns
    with `?`, `-`, JSON or space-delimited selectors stay moto's."""
    import re

    from moto.logs import models, utils

    original = utils.EventMessageFilter
    term = re.compile(r'"([^"]*)"|(\S+)')

    class EventMessageFilter(original):
        def __init__(self, pattern: str):
            super().__init__(pattern)
            self.terms = None
            text = (pattern or "").strip()
            if '"' in text and not re.match(r"[{\[]", text):
                found = [q or bare for q, bare in term.findall(text)]
                if found and not any(t[:1] in "?-" for t in found if t):
                    self.terms = found

        def matches(self, message: str) -> bool:
            if self.terms is None:
                return super().matches(message)
            return all(t in message for t in self.terms)

    utils.EventMessageFilter = EventMessageFilter
    models.EventMessageFilter = EventMessageFilter


# -- subscription filters applied -------------------------------------------------------------------------------
# moto stores subscription filters and hands every event of a PutLogEvents to a Lambda destination, unfiltered,
# through its Docker-backed invoke (which is absent here). AWS delivers only the events the filter pattern
# matches, asynchronously, as {"awslogs": {"data": base64(gzip(JSON))}}, and runs the function's own code with
# its own environment. Here a background worker does that: it never calls this server from the request thread
# (the request holds moto's state and the server would wait on itself).

def pattern_matches(pattern: str, message: str) -> bool:
    """CloudWatch Logs' filter pattern semantics: the product's own matcher (the term syntax it uses)."""
    from include.watch.tamper import pattern_matches as product

    return product(pattern, message)


def subscription_payload(owner: str, group: str, stream: str, filter_name: str, events: list[dict]) -> dict:
    """What CloudWatch Logs hands a Lambda destination (the documented subscription payload)."""
    import base64
    import gzip
    import json

    data = {"messageType": "DATA_MESSAGE", "owner": owner, "logGroup": group, "logStream": stream,
            "subscriptionFilters": [filter_name],
            "logEvents": [{"id": e["id"], "timestamp": e["timestamp"], "message": e["message"]} for e in events]}
    return {"awslogs": {"data": base64.b64encode(gzip.compress(json.dumps(data).encode())).decode()}}


# Runs one invocation in a fresh interpreter, as Lambda would: the package's directory first on sys.path, the
# function's environment, a context with the fields handlers read. Prints the handler's answer as JSON.
_RUNNER = """
import importlib, json, sys, types
module, name = sys.argv[1].rsplit(".", 1)
context = types.SimpleNamespace(function_name=sys.argv[2], invoked_function_arn=sys.argv[3],
                                aws_request_id=sys.argv[4], memory_limit_in_mb=128,
                                get_remaining_time_in_millis=lambda: 30000)
print(json.dumps(getattr(importlib.import_module(module), name)(json.load(sys.stdin), context), default=str))
"""


class _Deliveries:
    """One worker thread, deliveries in order of arrival (one PutLogEvents call after another)."""

    def __init__(self, endpoint: str) -> None:
        import queue
        import threading

        self.endpoint = endpoint
        self.jobs: queue.Queue = queue.Queue()
        self.packages: dict[str, str] = {}  # code sha → unpacked directory
        threading.Thread(target=self._work, name="subscription-deliveries", daemon=True).start()

    def put(self, job: dict) -> None:
        self.jobs.put(job)

    def _package(self, code: bytes) -> str:
        import hashlib
        import io
        import tempfile
        import zipfile

        sha = hashlib.sha256(code).hexdigest()
        if sha not in self.packages:
            where = tempfile.mkdtemp(prefix=f"lambda-{sha[:12]}-")
            zipfile.ZipFile(io.BytesIO(code)).extractall(where)
            self.packages[sha] = where
        return self.packages[sha]

    def _work(self) -> None:
        import json
        import os
        import subprocess
        import sys
        import uuid

        while True:
            job = self.jobs.get()
            try:
                where = self._package(job["code"])
                env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": where,
                       "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": job["region"], "AWS_DEFAULT_REGION": job["region"],
                       "AWS_ENDPOINT_URL": self.endpoint, "AWS_LAMBDA_FUNCTION_NAME": job["name"],
                       **job["environment"]}
                done = subprocess.run([sys.executable, "-c", _RUNNER, job["handler"], job["name"], job["arn"],
                                       str(uuid.uuid4())], input=json.dumps(job["event"]), capture_output=True,
                                      text=True, cwd=where, env=env, timeout=60)
                print(f"subscription delivery to {job['name']} ({job['group']} {job['stream']}, "
                      f"{job['count']} events): exit {done.returncode} {done.stdout.strip()[:300]} "
                      f"{done.stderr.strip()[-1500:]}", file=sys.stderr, flush=True)
            except Exception as exc:  # noqa: BLE001 - a failed delivery is logged, as Lambda's errors are
                print(f"subscription delivery failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def subscriptions_deliver(endpoint: str) -> None:
    """Lambda destinations of subscription filters get the events their pattern matches, asynchronously, run
    from the function's own code stored in moto with its environment, boto3 pointed at `endpoint` (this
    server). Other destinations stay moto's."""
    from moto.logs import models

    original = models.LogStream._send_log_events
    deliveries = _Deliveries(endpoint)

    def _send_log_events(self, service, destination_arn, filter_name, log_events):
        if service != "lambda":
            return original(self, service, destination_arn, filter_name, log_events)
        subscription = self.log_group.subscription_filters.get(filter_name)
        pattern = subscription.filter_pattern if subscription is not None else ""
        matched = [e for e in log_events if pattern_matches(pattern, e["message"])]
        if not matched:
            return None
        from moto.awslambda.utils import get_backend

        function = get_backend(self.account_id, self.region)._lambdas.get_arn(destination_arn)
        if function is None:  # deleted since the filter was put: AWS drops the delivery too
            return None
        deliveries.put({"code": function.code_bytes, "handler": function.handler, "name": function.function_name,
                        "arn": destination_arn, "environment": dict(function.environment_vars or {}),
                        "region": self.region, "group": self.log_group.name, "stream": self.log_stream_name,
                        "count": len(matched),
                        "event": subscription_payload(self.account_id, self.log_group.name, self.log_stream_name,
                                                      filter_name, matched)})
        return None

    models.LogStream._send_log_events = _send_log_events
