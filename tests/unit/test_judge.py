"""judge_host: transport outcome + output → status, with a fake stream lookup (no AWS)."""
from __future__ import annotations

from datetime import datetime, timezone

from devstack.host_states import render_output
from include.checks.catalogue import CATALOGUE
from include.config import AuditParams
from include.models import Host, HostOutcome, Status
from include.verify import judge_host

NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
HOST = Host("i-0abc", "us-east-1", "123", "10.0.0.5", private_ip="10.0.0.5")


class FakeLookup:
    def __init__(self, age_minutes: float | None):
        self.age, self.calls = age_minutes, []

    def describe(self, group, stream):
        self.calls.append((group, stream))
        if self.age is None:
            return None
        return {"logStreamName": stream, "lastIngestionTime": int(NOW.timestamp() * 1000 - self.age * 60000)}


def judge(profile: str, lookup, **outcome):
    out = HostOutcome("i-0abc", None, output=render_output(profile, {"hostname": "h"}).encode(), **outcome)
    return judge_host(HOST, out, lookup, AuditParams(), now=lambda: NOW)


def test_compliant_host_looks_up_its_own_stream():
    lookup = FakeLookup(5)
    status, failed, verdicts, _ = judge("compliant", lookup)
    assert status == Status.COMPLIANT and failed == []
    assert lookup.calls == [("/ec2/audit", "i-0abc")]
    assert set(verdicts) == {c.id for c in CATALOGUE}


def test_stale_and_missing_stream_fail_the_aws_check():
    assert judge("compliant", FakeLookup(500))[1] == ["cwagent.log_stream_fresh"]
    assert judge("compliant", FakeLookup(None))[1] == ["cwagent.log_stream_fresh"]


def test_not_shipping_fails_both_agent_log_checks_without_lookup():
    lookup = FakeLookup(5)
    assert judge("agent_not_shipping", lookup)[1] == ["cwagent.log_stream_fresh", "cwagent.ships_audit_log"]
    assert lookup.calls == []


def test_lookup_exception_is_an_error_for_that_check_only():
    class Broken:
        def describe(self, group, stream):
            raise RuntimeError("throttled")

    status, failed, verdicts, detail = judge("compliant", Broken())
    assert status == Status.ERROR and "throttled" in detail
    assert verdicts["cwagent.log_stream_fresh"].status.value == "ERROR"


def test_transport_failure_has_no_checks():
    out = HostOutcome("i-0abc", Status.AUTH_FAILED, "key refused")
    assert judge_host(HOST, out, FakeLookup(5), AuditParams()) == (Status.AUTH_FAILED, [], {}, "key refused")


def test_truncated_output_is_error():
    text = render_output("compliant", {"hostname": "h"})
    out = HostOutcome("i-0abc", None, output=text[: len(text) // 2].encode(), truncated=True)
    status, _, _, detail = judge_host(HOST, out, FakeLookup(5), AuditParams(), now=lambda: NOW)
    assert status == Status.ERROR and "truncated" in detail
