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
