"""Issue 29: without ssm_output_bucket every host's SSM output is one GetCommandInvocation; a fleet whose reads
would take more than the budget of that API's rate is refused at discovery, naming the param."""
from __future__ import annotations

import pytest

from include.reach.choice import INLINE_MAX_HOSTS, INLINE_READ_BUDGET_S, INLINE_READS_PER_S, inline_read_problem


def test_the_threshold_is_the_rate_times_the_budget():
    assert (INLINE_READS_PER_S, INLINE_READ_BUDGET_S) == (5, 900)
    assert INLINE_MAX_HOSTS == 4_500


@pytest.mark.parametrize("transport", ["ssm", "auto"])
def test_a_large_scope_without_a_bucket_is_refused_naming_the_param_the_count_and_the_rate(transport):
    problem = inline_read_problem(transport, None, {"us-east-1": 10, "eu-west-1": INLINE_MAX_HOSTS + 1})
    assert problem is not None
    assert problem.startswith("param ssm_output_bucket:")
    assert "4,501 hosts in eu-west-1" in problem and "5 calls/s" in problem and "GetCommandInvocation" in problem
    assert "us-east-1" not in problem


@pytest.mark.parametrize("transport", ["ssm", "auto"])
def test_a_fleet_at_the_threshold_in_every_scope_reads_inline(transport):
    # the quota is per account and Region: two scopes at the threshold each still fit
    assert inline_read_problem(transport, None, {"us-east-1": INLINE_MAX_HOSTS, "eu-west-1": INLINE_MAX_HOSTS}) is None
    assert inline_read_problem(transport, "", {}) is None


def test_a_bucket_or_a_transport_without_ssm_needs_no_inline_reads():
    big = {"us-east-1": 100_000}
    assert inline_read_problem("ssm", "audit-ssm-out", big) is None
    assert inline_read_problem("auto", "audit-ssm-out", big) is None
    assert inline_read_problem("ssh", None, big) is None
    assert inline_read_problem("eic", None, big) is None


# ---- with ssm_output_bucket: S3 for every host; GetCommandInvocation only for a missing object, and boundedly

import asyncio  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

from include.core.status import Status  # noqa: E402
from include.reach.ssm import INLINE_FALLBACK_READS, SsmSettings, SsmTransport  # noqa: E402
from tests.unit.reach.test_ssm_transport_unit import FakeSsm, host  # noqa: E402

BUCKET = SsmSettings(poll_s=0.01, output_bucket="audit-out", output_bucket_owner="123456789012")


class MissingS3:
    """Every object missing (NoSuchKey), or refused with `code`."""

    def __init__(self, code="NoSuchKey"):
        self.code, self.reads = code, 0

    def get_object(self, **kw):
        self.reads += 1
        raise ClientError({"Error": {"Code": self.code, "Message": "nope"}}, "GetObject")


def run_all(fake, hosts, s3):
    outcomes = {}

    async def collect(h, o):
        outcomes[h.instance_id] = o

    transport = SsmTransport(fake, s3, BUCKET)
    asyncio.run(transport.run(hosts, "echo checks\n", collect))
    return outcomes, transport


def test_a_missing_output_object_falls_back_to_get_command_invocation_and_says_so():
    h = host(1)
    fake = FakeSsm({h.instance_id: "Online"}, output=lambda iid: "inline out")
    out, transport = run_all(fake, [h], MissingS3())
    o = out[h.instance_id]
    assert o.transport_status is None and o.output == b"inline out"
    assert "NoSuchKey" in o.transport_evidence["ssm_output"] and "GetCommandInvocation" in o.transport_evidence["ssm_output"]
    assert transport.calls["s3:GetObject"] == 1 and transport.calls["GetCommandInvocation"] == 1


def test_the_fallback_is_bounded_per_batch_and_the_rest_are_error_naming_the_bucket():
    hosts = [host(n) for n in range(1, INLINE_FALLBACK_READS + 11)]
    fake = FakeSsm({h.instance_id: "Online" for h in hosts})
    out, transport = run_all(fake, hosts, MissingS3())
    assert fake.calls["get_command_invocation"] == INLINE_FALLBACK_READS == transport.calls["GetCommandInvocation"]
    errors = [o for o in out.values() if o.transport_status == Status.ERROR]
    assert len(errors) == 10 and len(out) == len(hosts)
    assert all("s3://audit-out/" in o.transport_detail and "NoSuchKey" in o.transport_detail for o in errors)


def test_a_refused_read_is_that_hosts_error_never_a_fallback():
    h = host(1)
    fake = FakeSsm({h.instance_id: "Online"})
    out, transport = run_all(fake, [h], MissingS3("AccessDenied"))
    assert out[h.instance_id].transport_status == Status.ERROR and "AccessDenied" in out[h.instance_id].transport_detail
    assert "get_command_invocation" not in fake.calls
