"""A judged host's raw output is kept, compressed, until its evidence is written, and stored before the item that
names it (include/verify/writer.py, include/verify/batch.py; the store: include/evidence/raw_store.py)."""
from __future__ import annotations

import hashlib
import os
from types import SimpleNamespace

from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.evidence.observation import OUTPUT_IN_DYNAMODB, RawOutput
from include.evidence.raw_store import RawOutputStore
from include.reach.ssh import SshSettings
from include.settings.params import AuditParams
from include.verify.batch import BatchRun, RunContext
from include.verify.judge import Judgement
from include.verify.writer import EvidenceWriter

DAY = "2031-01-02"


class Log:
    """Records the order of writes: raw outputs and items."""

    def __init__(self):
        self.calls = []


class FakeRaws(RawOutputStore):
    def __init__(self, log: Log, bucket: str | None = None):
        super().__init__(SimpleNamespace(meta=SimpleNamespace(client=None)), "ev", bucket=bucket,
                         s3=object() if bucket else None)
        self.log = log

    def put(self, entries):
        entries = list(entries)
        self.log.calls.append(("raws", [(it["instance_id"], raw) for it, raw in entries]))
        return len(entries)


class FakeStore:
    table_name = "ev"
    resource = SimpleNamespace(meta=SimpleNamespace(client=None))

    def __init__(self, log: Log | None = None):
        self.log = log or Log()

    def put_observations(self, items):
        self.log.calls.append(("items", [it["instance_id"] for it in items]))
        return items


def item(iid: str, sha: str) -> dict:
    return {"instance_id": iid, "audit_date": DAY, "output_sha256": sha, "expires_at": 1}


def test_raw_outputs_are_stored_before_the_items_that_name_them_and_then_released():
    log = Log()
    writer = EvidenceWriter(FakeStore(log), every=2, raws=FakeRaws(log))
    first, second = RawOutput.of(b"one"), RawOutput.of(b"two")
    assert not writer.add(item("i-1", first.sha256), first)
    assert writer.add(item("i-2", ""))  # no output (unreachable): nothing to keep
    writer.write(writer.take())
    assert log.calls == [("raws", [("i-1", first)]), ("items", ["i-1", "i-2"])]
    assert writer.raw_pending == {}  # a flushed batch holds no output
    writer.add(item("i-3", second.sha256), second)
    writer.close()
    assert log.calls[2:] == [("raws", [("i-3", second)]), ("items", ["i-3"])]


def test_a_judged_host_keeps_exactly_the_bytes_returned_and_its_item_names_them():
    output = os.urandom(4096)
    outcome = HostOutcome("i-0123456789abcdef0", None, output=output)
    assert outcome.drop_output() == output and outcome.output == b""
    assert outcome.digest() == (hashlib.sha256(output).hexdigest(), len(output))  # kept once dropped

    log = Log()
    host = Host("i-0123456789abcdef0", "us-east-1", "123456789012", "10.0.0.1")
    ctx = RunContext(DAY, "run-1", AuditParams(), SshSettings(username="ec2-user", private_key="unused"))
    run = BatchRun(ctx, FakeStore(log), None, [host], raws=FakeRaws(log))
    raw = RawOutput.of(output)
    run.record(host, outcome, Judgement(Status.COMPLIANT, [], {}, "ok"), raw)
    run.record(Host("i-unreached", "us-east-1", "123456789012", "10.0.0.2"),
               HostOutcome("i-unreached", Status.UNREACHABLE), Judgement(Status.UNREACHABLE, [], {}, "no route"))
    kept, unreached = run.writer.pending
    assert (kept["output_sha256"], kept["output_bytes"], kept["output_ref"]) == (raw.sha256, 4096, OUTPUT_IN_DYNAMODB)
    assert (unreached["output_sha256"], unreached["output_ref"]) == ("", "")
    run.writer.close()
    assert log.calls[0] == ("raws", [("i-0123456789abcdef0", raw)]) and raw.raw() == output


def test_with_evidence_bucket_the_item_names_its_object():
    host = Host("i-0123456789abcdef0", "us-east-1", "123456789012", "10.0.0.1")
    ctx = RunContext(DAY, "run-1", AuditParams(evidence_bucket="audit-evidence"),
                     SshSettings(username="ec2-user", private_key="unused"))
    log = Log()
    run = BatchRun(ctx, FakeStore(log), None, [host], raws=FakeRaws(log, bucket="audit-evidence"))
    outcome, raw = HostOutcome(host.instance_id, None, output=b"out"), RawOutput.of(b"out")
    outcome.drop_output()
    run.record(host, outcome, Judgement(Status.COMPLIANT, [], {}, "ok"), raw)
    assert run.writer.pending[0]["output_ref"] == (f"s3://audit-evidence/raw/{host.instance_id}/{DAY}/"
                                                   f"{raw.sha256}.gz")
