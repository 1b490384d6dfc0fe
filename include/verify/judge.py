"""Judge one host: its transport outcome and script output, the AWS side (its log stream, its canary), scored
under the run's profile (include/verify/profiles.py). Nothing here reaches a host or writes evidence: the batch
(include/verify/batch.py) hands each outcome in and stores the Judgement that comes out.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from include.checks import parsers
from include.checks.aws_side import AwsView, HostFacts
from include.checks.catalogue import CANARY_CHECK, CheckOptions, evaluate_aws_checks, evaluate_host_checks
from include.checks.rulesets import load_rule_set
from include.checks.sections import split_sections
from include.core.clock import utc_now
from include.core.host import Host, HostOutcome
from include.core.scoring import scored
from include.core.status import CheckStatus, Status, Verdict
from include.logs.canary import CANARY_POLL_S, Canary, find_canaries
from include.logs.streams import StreamLookup
from include.settings.params import AuditParams
from include.verify import name_claims
from include.verify.profiles import Profile, load_profile

log = logging.getLogger(__name__)

STREAM_CHECK = "cwagent.log_stream_fresh"
# AWS-side judging (stream lookups) of one batch stops asking after this long: the rest are ERROR, not a
# task that outlives its execution_timeout (dags/ec2_audit_compliance.py) on a throttled account.
JUDGE_BUDGET_S = 900.0
# Re-checking exactly a stream the run's complete listing answers as stale or missing (include/logs/streams.py)
# can only refine a FAIL: it may use the first half of the budget, and leaves the rest to lookups that nothing
# else answers (a batch's first names in a group, groups no listing covers).
RECHECK_SHARE = 0.5
# ...and the run's re-checks together at most what that half of one budget holds at DescribeLogStreams' 25
# requests/s (account and Region): 11,250, shared by the run's batches. Batches run in waves, each with its own
# budget: without a run-wide bound, 43 batches at 100,000 hosts would re-check 30,000 stale streams (1,314 s of
# the quota) where 16 re-checked 11,250 (docs/PERFORMANCE.md).
RUN_RECHECKS = int(JUDGE_BUDGET_S * RECHECK_SHARE * 25)


def _identity(host: Host, outputs: dict[str, str]) -> dict[str, str | None]:
    """How the agent resolves its placeholders on this host. amazon-cloudwatch-agent's placeholder util
    (translator/.../util/placeholderUtil.go): {hostname} is the EC2 metadata hostname (the private DNS name; the OS
    hostname only without metadata), {local_hostname} the OS hostname "regardless of ec2 metadata"."""
    reported = parsers.hostname_from(outputs)
    return {"instance_id": host.instance_id, "hostname": host.private_dns or reported,
            "local_hostname": reported, "ip_address": host.private_ip}


def _trusted(host: Host, outputs: dict[str, str]) -> dict[str, str | None]:
    """What EC2 says of the instance, and the hostname the host reports (which counts only when it is specific
    to the host: parsers.own_hostname): the names a stream may carry to count as this host's."""
    return {"instance_id": host.instance_id, "private_ip": host.private_ip, "private_dns": host.private_dns,
            "hostname": parsers.hostname_from(outputs)}


class BudgetExceeded(RuntimeError):
    pass


@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.monotonic)
    refinements: int = RUN_RECHECKS  # this batch's share of the run's re-checks (batches_in_run)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)  # hosts judge in threads

    @classmethod
    def for_batch(cls, batches_in_run: int, seconds: float = JUDGE_BUDGET_S) -> "Budget":
        return cls(seconds, refinements=math.ceil(RUN_RECHECKS / max(1, batches_in_run)))

    def check(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise BudgetExceeded(f"the batch's AWS judging budget of {self.seconds:g}s is spent")

    def may_refine(self) -> bool:
        """Whether an optional exact lookup (a re-check of the listing's answer) still fits: within RECHECK_SHARE
        of the budget and the batch's share of RUN_RECHECKS. A yes is counted: the caller makes the lookup."""
        with self._lock:
            if self.refinements <= 0 or time.monotonic() - self.started > self.seconds * RECHECK_SHARE:
                return False
            self.refinements -= 1
            return True


def host_facts(host: Host, outputs: dict[str, str], verdicts: dict[str, Verdict],
               fallback_group: str | None) -> HostFacts:
    identity = _identity(host, outputs)
    try:
        targets = parsers.stream_targets(outputs, identity, fallback_group)
    except Exception as exc:  # noqa: BLE001 - an odd config is those checks' ERROR, not the host's
        targets = Verdict.error(f"agent config unusable: {type(exc).__name__}: {exc}"[:300])
    return HostFacts(host.instance_id, outputs, verdicts, identity, _trusted(host, outputs), targets)


def aws_view(lookup, params: AuditParams, now: Callable[[], datetime]) -> AwsView:
    return AwsView(lookup, now, params.stream_max_age_minutes, params.canary)


@dataclass
class Judgement:
    status: Status
    failed: list[str]
    verdicts: dict[str, Verdict]
    detail: str
    advisory: list[str] = field(default_factory=list)
    canary: Canary | None = field(default=None)  # set while the canary search is still to come
    complete: bool = True  # the script's end marker was seen (no section missing by a cut)
    truncated: bool = False  # the output cap was hit
    claims: list[tuple[str, str]] = field(default_factory=list)  # streams not named by the instance id (name_claims)


def score(j: Judgement, profile: Profile) -> None:
    score, j.detail = scored(j.verdicts, profile.decides, profile.name, j.complete, j.truncated)
    j.status, j.failed, j.advisory = score.status, score.failed, score.advisory


def judge_host(host: Host, outcome: HostOutcome, lookup: StreamLookup, params: AuditParams,
               now: Callable[[], datetime] = utc_now, profile: Profile | None = None,
               options: CheckOptions | None = None) -> Judgement:
    """Transport outcome + script output → status, failed check ids, verdicts, one-line detail. Never raises:
    a host whose output breaks the judge is ERROR, the batch goes on. A batch passes its profile and options
    (read once per batch, not per host)."""
    if outcome.transport_status is not None:
        return Judgement(outcome.transport_status, [], {}, outcome.transport_detail)
    try:
        profile = profile or load_profile(params.profile)
        options = options or CheckOptions(rule_groups=load_rule_set(params.rule_set))
        return _judge_output(host, outcome, lookup, params, now, profile, options)
    except Exception as exc:  # noqa: BLE001 - one odd host must not cost the batch
        log.exception("judging %s failed", host.instance_id)
        return Judgement(Status.ERROR, [], {}, f"could not judge this host's output: {type(exc).__name__}: {exc}"[:300])


def _judge_output(host: Host, outcome: HostOutcome, lookup: StreamLookup, params: AuditParams,
                  now: Callable[[], datetime], profile: Profile, options: CheckOptions) -> Judgement:
    output = split_sections(outcome.output.decode("utf-8", errors="replace"), outcome.nonce)
    output.truncated = outcome.truncated
    verdicts = evaluate_host_checks(output, options)
    facts = host_facts(host, output.usable(), verdicts, params.log_group)
    aws_verdicts, canary = evaluate_aws_checks(facts, aws_view(lookup, params, now))
    verdicts.update(aws_verdicts)
    j = Judgement(Status.ERROR, [], verdicts, "", canary=canary, complete=output.complete, truncated=output.truncated,
                  claims=name_claims.claims(host.instance_id, facts.targets))
    score(j, profile)
    return j


def settle_canaries(waiting: list[Judgement], logs_client, tag: str, since_ms: int, wait_s: float,
                    profile: Profile, per_call_s: float = 0.0) -> None:
    """Search the batch's canaries together (those carrying the batch's tag), then fill in each host's verdict
    and status. A canary found in the host's stream proves delivery: it also settles log_stream_fresh when that
    stream was not provably the host's own (shared or misnamed)."""
    seen = find_canaries(logs_client, [j.canary for j in waiting], tag, since_ms, wait_s, poll_s=CANARY_POLL_S,
                         per_call_s=per_call_s)
    for j in waiting:
        delay = seen.get(j.canary.instance_id)
        where = f"{j.canary.group}/{j.canary.stream}"
        if j.canary.tag != tag:
            j.verdicts[CANARY_CHECK] = Verdict.failed(f"the canary line names tag {j.canary.tag}, not this batch's "
                                                      f"{tag}: it is not the marker this run asked for")
        elif isinstance(delay, str):  # its group could not be searched: AWS's reason, this host only
            j.verdicts[CANARY_CHECK] = Verdict.error(delay[:300])
        elif delay is not None:
            j.verdicts[CANARY_CHECK] = Verdict.passed(f"canary found in {where} after {delay:g}s")
            if j.verdicts.get(STREAM_CHECK, Verdict.passed("")).status != CheckStatus.PASS:
                j.verdicts[STREAM_CHECK] = Verdict.passed(f"this host's canary arrived in {where} after {delay:g}s: "
                                                          "delivery proven end to end")
        else:
            j.verdicts[CANARY_CHECK] = Verdict.failed(f"canary not found in {where} within {wait_s:g}s")
        j.canary = None
        score(j, profile)
