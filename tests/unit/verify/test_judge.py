"""judge_host: transport outcome + output → status, with a fake stream lookup (no AWS)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from devstack.standins.hosts.host_states import TEST_NONCE, render_output
from include.checks.catalogue import CATALOGUE
from include.checks.probes import end_mark, section_mark
from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.settings.params import AuditParams
from include.verify.judge import judge_host

NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)
HOST = Host("i-0abc", "us-east-1", "123", "10.0.0.5", private_ip="10.0.0.5")
IDENTITY = {"hostname": "h", "instance_id": "i-0abc"}


class FakeLookup:
    def __init__(self, age_minutes: float | None):
        self.age, self.calls = age_minutes, []

    def describe(self, group, stream):
        self.calls.append((group, stream))
        if self.age is None:
            return None
        return {"logStreamName": stream, "lastIngestionTime": int(NOW.timestamp() * 1000 - self.age * 60000)}


def judge(profile: str, lookup, **outcome):
    out = HostOutcome("i-0abc", None, output=render_output(profile, IDENTITY).encode(), nonce=TEST_NONCE, **outcome)
    return judge_host(HOST, out, lookup, AuditParams(), now=lambda: NOW)


def test_compliant_host_looks_up_its_own_stream():
    lookup = FakeLookup(5)
    j = judge("compliant", lookup)
    status, failed, verdicts = j.status, j.failed, j.verdicts
    assert status == Status.COMPLIANT and failed == []
    assert verdicts["cwagent.canary_delivered"].status.value == "NOT_APPLICABLE"  # opt-in
    assert lookup.calls == [("/ec2/audit", "i-0abc")]
    assert set(verdicts) == {c.id for c in CATALOGUE}


def test_stale_and_missing_stream_fail_the_aws_check():
    assert judge("compliant", FakeLookup(500)).failed == ["cwagent.log_stream_fresh"]
    assert judge("compliant", FakeLookup(None)).failed == ["cwagent.log_stream_fresh"]


def test_not_shipping_fails_both_agent_log_checks_without_lookup():
    lookup = FakeLookup(5)
    assert judge("agent_not_shipping", lookup).failed == ["cwagent.log_stream_fresh", "cwagent.ships_audit_log"]
    assert lookup.calls == []


def test_lookup_exception_is_an_error_for_that_check_only():
    class Broken:
        def describe(self, group, stream):
            raise RuntimeError("throttled")

    j = judge("compliant", Broken())
    assert j.status == Status.ERROR and "throttled" in j.detail
    assert j.verdicts["cwagent.log_stream_fresh"].status.value == "ERROR"


def test_transport_failure_has_no_checks():
    out = HostOutcome("i-0abc", Status.AUTH_FAILED, "key refused")
    j = judge_host(HOST, out, FakeLookup(5), AuditParams())
    assert (j.status, j.failed, j.verdicts, j.detail) == (Status.AUTH_FAILED, [], {}, "key refused")


def test_truncated_output_is_error():
    text = render_output("compliant", IDENTITY)
    out = HostOutcome("i-0abc", None, output=text[: len(text) // 2].encode(), truncated=True,
                      nonce=TEST_NONCE)
    j = judge_host(HOST, out, FakeLookup(5), AuditParams(), now=lambda: NOW)
    assert j.status == Status.ERROR and "truncated" in j.detail


TAG = "5eed0123456789ab"


def test_canary_planned_only_when_opted_in_and_written():
    line = f"canary: ec2-audit-canary {TAG} 0f8e2b8a-5a0e-4a53-9d0b-1c2d3e4f5a6b"
    text = render_output("compliant", IDENTITY).replace(
        end_mark(TEST_NONCE), f"{section_mark(TEST_NONCE)} canary\n{line}\n\n{end_mark(TEST_NONCE)}")
    out = HostOutcome("i-0abc", None, output=text.encode(), nonce=TEST_NONCE)
    j = judge_host(HOST, out, FakeLookup(5), AuditParams(canary=True), now=lambda: NOW)
    assert j.canary is not None and j.canary.stream == "i-0abc" and j.canary.group == "/ec2/audit"
    assert j.canary.token.endswith("1c2d3e4f5a6b") and j.canary.tag == TAG
    refused = text.replace(line, "canary: failed: sudo: a password is required")
    j = judge_host(HOST, HostOutcome("i-0abc", None, output=refused.encode(), nonce=TEST_NONCE), FakeLookup(5), AuditParams(canary=True),
                   now=lambda: NOW)
    assert j.canary is None and j.verdicts["cwagent.canary_delivered"].status.value == "ERROR"
    # A line without the batch tag (an older script, or a host making up its own) is not a canary
    untagged = text.replace(line, "canary: ec2-audit-canary 0f8e2b8a-5a0e-4a53-9d0b-1c2d3e4f5a6b")
    j = judge_host(HOST, HostOutcome("i-0abc", None, output=untagged.encode(), nonce=TEST_NONCE), FakeLookup(5),
                   AuditParams(canary=True), now=lambda: NOW)
    assert j.canary is None and j.verdicts["cwagent.canary_delivered"].status.value == "ERROR"


class PagedLogs:
    """FilterLogEvents as the group holds it: events with their streams, matched by the pattern's terms, in
    pages of `page` events."""

    def __init__(self, events: list[tuple[str, str]], page: int = 10_000):
        self.events, self.page, self.calls, self.patterns = events, page, 0, []

    def get_paginator(self, name):
        logs = self

        class P:
            def paginate(self, **kw):
                assert "logStreamNames" not in kw  # the whole group, once a poll
                logs.patterns.append(kw["filterPattern"])
                terms = [t.strip('"') for t in kw["filterPattern"].split(" ")]
                hits = [(s, m) for s, m in logs.events if all(t in m for t in terms)]
                for start in range(0, max(1, len(hits)), logs.page):
                    logs.calls += 1
                    yield {"events": [{"logStreamName": s, "message": m} for s, m in hits[start:start + logs.page]]}
        return P()


def _token(tag: str, uid: str) -> str:
    return f"ec2-audit-canary {tag} {uid}"


def _record(token: str) -> str:
    """The USER record `auditctl -m` makes, as audit 3.0.9 wrote it here (ENRICHED: the names after \\x1d)."""
    return (f"type=USER msg=audit(1796620777.409:2): pid=14985 uid=0 auid=4294967295 ses=4294967295 msg='text={token} "
            "exe=\"/usr/sbin/auditctl\" hostname=? addr=? terminal=? res=success'\x1dUID=\"root\" AUID=\"unset\"")


@pytest.mark.parametrize("message,counts", [
    (_record(_token(TAG, "a1" * 16)), True),
    (_record(_token(TAG, "a1" * 16)).replace("text=", ""), True),  # older auditctl: no text= prefix
    ("node=ip-10-0-0-5 " + _record(_token(TAG, "a1" * 16)), True),  # name_format adds node=
    # sudo logs the command line into the auth log: the same words, not an audit record
    (f"Dec  7 05:00:00 ip-10-0-0-5 sudo: ec2audit : PWD=/home/ec2audit ; USER=root ; "
     f"COMMAND=/usr/sbin/auditctl -m {_token(TAG, 'a1' * 16)}", False),
    (f"Dec  7 05:00:00 ip-10-0-0-5 app: {_record(_token(TAG, 'a1' * 16))}", False),  # a record quoted in syslog
    (f"type=USER_CMD msg=audit(1.0:9): pid=1 uid=0 msg='cwd=\"/\" cmd=2F7573722F7362696E {_token(TAG, 'a1' * 16)}'",
     False),
    (f"type=USER msg=audit(1.0:9): pid=1 uid=0 msg='text=hello {_token(TAG, 'a1' * 16)}'", False),  # not the text
])
def test_a_canary_counts_only_as_its_own_audit_record(message, counts):
    from include.logs.canary import Canary, find_canaries

    logs = PagedLogs([("s1", message)])
    found = find_canaries(logs, [Canary("i-1", "g", "s1", _token(TAG, "a1" * 16))], TAG, since_ms=0, wait_s=0,
                          clock=lambda: 0.0, sleep=lambda d: None)
    assert (found["i-1"] is not None) == counts


def test_find_canaries_polls_in_bulk_until_found_or_deadline():
    from include.logs.canary import Canary, find_canaries

    A, B, C = "a1" * 16, "b2" * 16, "c3" * 16
    logs = PagedLogs([("s1", f"type=USER msg=audit(1.0:1): msg='{_token(TAG, A)}'"),
                      # i-3's canary, but in another host's stream: proves nothing for i-3
                      ("s1", f"type=USER msg=audit(1.0:3): msg='{_token(TAG, C)}'")])
    t = [0.0]

    def sleep(d):
        t[0] += d
        if t[0] >= 3:  # i-2's canary arrives before the second poll
            logs.events.append(("s2", f"type=USER msg=audit(1.0:2): msg='{_token(TAG, B)}'"))

    found = find_canaries(logs, [Canary("i-1", "g", "s1", _token(TAG, A)), Canary("i-2", "g", "s2", _token(TAG, B)),
                                 Canary("i-3", "g", "s3", _token(TAG, C))],
                          TAG, since_ms=0, wait_s=10, poll_s=3, clock=lambda: t[0], sleep=sleep)
    assert found["i-1"] == 0 and found["i-2"] == 3 and found["i-3"] is None
    assert logs.calls == 5  # one call per poll (0, 3, 6, 9, 10 s) for the whole group, not one per host
    assert set(logs.patterns) == {f'"ec2-audit-canary" "{TAG}"'}


def test_a_batch_searches_only_its_own_tag_and_spaces_polls_by_the_pages_they_took():
    from include.logs.canary import Canary, find_canaries

    other = "0123456789abcdef"
    # 30 canaries of other batches in the group, 3 of this one: this batch's search sees its own only
    events = [("s-other", _record(_token(other, f'{n:032x}'))) for n in range(30)]
    mine = [Canary(f"i-{n}", "g", f"s{n}", _token(TAG, f"{n + 100:032x}")) for n in range(3)]
    events += [(c.stream, _record(c.token)) for c in mine[:2]]
    logs = PagedLogs(events, page=1)
    t, sleeps = [0.0], []

    def sleep(d):
        sleeps.append(d)
        t[0] += d

    forged = Canary("i-9", "g", "s9", _token(other, "f" * 32))  # a host claiming another batch's tag
    found = find_canaries(logs, mine + [forged], TAG, since_ms=0, wait_s=20, poll_s=3, per_call_s=4,
                          clock=lambda: t[0], sleep=sleep)
    assert found == {"i-0": 0, "i-1": 0, "i-2": None, "i-9": None}
    assert logs.patterns and set(logs.patterns) == {f'"ec2-audit-canary" "{TAG}"'}  # never another tag
    assert sleeps[0] == 8  # the first poll took two pages (requests): 2 × 4 s before the next


def test_the_run_s_batches_together_poll_filter_log_events_within_its_quota():
    from include.logs.canary import CANARY_POLL_S, FILTER_LOG_EVENTS_PER_S, canary_call_spacing_s

    assert canary_call_spacing_s(1) < CANARY_POLL_S  # a lone batch polls every 3 s
    for batches in (16, 48):
        # each request delays that batch's next poll by the spacing: all batches together, requests per second
        assert batches / canary_call_spacing_s(batches) <= FILTER_LOG_EVENTS_PER_S


def test_put_items_resends_unprocessed_with_backoff():
    from include.evidence.store import EvidenceStore

    class Resource:
        def __init__(self):
            self.calls, self.meta = [], type("M", (), {"client": None})()

        def Table(self, name):
            return None

        def batch_write_item(self, RequestItems):
            batch = list(RequestItems.values())[0]
            self.calls.append(len(batch))
            # throttle: the first attempt of each chunk leaves two items unprocessed
            if len(self.calls) % 2 == 1 and len(batch) > 2:
                return {"UnprocessedItems": {"t": batch[:2]}}
            return {}

    resource = Resource()
    store = EvidenceStore(resource, "t")
    items = [{"instance_id": f"i-{n}", "audit_date": "2026-11-23", "status": "COMPLIANT"} for n in range(30)]
    items.append(dict(items[0], status="NON_COMPLIANT"))  # same key twice: the last one wins, once
    assert store.put_items(items, base_delay=0) == 30
    assert resource.calls == [25, 2, 5, 2]




def test_a_group_aws_refuses_is_that_host_s_error_and_the_others_are_searched():
    from botocore.exceptions import ClientError

    from include.logs.canary import Canary, find_canaries

    ok = PagedLogs([("s1", _record(_token(TAG, "a1" * 16)))])
    searched = []

    class Logs:
        def get_paginator(self, name):
            outer = ok.get_paginator(name)

            class P:
                def paginate(self, **kw):
                    searched.append(kw["logGroupName"])
                    if kw["logGroupName"] == "/forbidden":
                        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not yours"}},
                                          "FilterLogEvents")
                    yield from outer.paginate(**kw)
            return P()

    found = find_canaries(Logs(), [Canary("i-1", "/ok", "s1", _token(TAG, "a1" * 16)),
                                   Canary("i-2", "/forbidden", "s2", _token(TAG, "b2" * 16)),
                                   Canary("i-3", "bad group!", "s3", _token(TAG, "c3" * 16))],
                          TAG, since_ms=0, wait_s=0, clock=lambda: 0.0, sleep=lambda d: None)
    assert found["i-1"] == 0
    assert found["i-2"] == "FilterLogEvents on /forbidden: AccessDeniedException: not yours"
    assert "not a valid CloudWatch Logs group name" in found["i-3"]
    assert "bad group!" not in searched  # an invalid name is never sent


def test_a_refused_stream_lookup_errs_that_check_only():
    from include.checks.aws_side import AwsRefused

    class Refusing:
        def describe(self, group, stream):
            raise AwsRefused(f"DescribeLogStreams on {group}: AccessDeniedException: no")

    j = judge("compliant", Refusing())
    v = j.verdicts["cwagent.log_stream_fresh"]
    assert v.status.value == "ERROR" and "AccessDeniedException" in v.detail
    assert j.verdicts["auditd.running"].status.value == "PASS"  # the other checks were judged
    assert j.status == Status.ERROR


def test_rechecks_of_the_run_listing_s_answers_may_use_only_the_first_share_of_the_judging_budget():
    """Re-checks only refine a FAIL the listing already gives: past RECHECK_SHARE of the budget they stop, and the
    rest of the budget is left to lookups nothing else answers (still allowed by check())."""
    import time as _time

    from include.verify.judge import RECHECK_SHARE, Budget

    budget = Budget(100.0, started=_time.monotonic())
    assert budget.may_refine()
    budget.started -= 100.0 * RECHECK_SHARE + 1  # as if that much of the budget had passed
    assert not budget.may_refine()
    budget.check()  # the budget itself is not spent


def test_re_checks_of_the_listing_are_shared_out_across_the_run_s_batches():
    """Each batch re-checks at most its share of RUN_RECHECKS: batches judged in waves each have a whole budget,
    so without a run-wide count 43 batches at 100,000 hosts re-checked 30,000 stale streams (1,314 s of
    DescribeLogStreams' 25/s) where the run can afford 11,250."""
    from include.verify.judge import RUN_RECHECKS, Budget

    budget = Budget.for_batch(43)
    allowed = 0
    while budget.may_refine() and allowed < RUN_RECHECKS:
        allowed += 1
    assert allowed == -(-RUN_RECHECKS // 43) == 262
    assert Budget.for_batch(1).refinements == RUN_RECHECKS
