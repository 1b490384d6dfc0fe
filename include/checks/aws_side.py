"""The checks judged on the AWS side, with the same shape as every other catalogue entry's parser.

A host can lie about itself; CloudWatch Logs cannot be made to hold events that never arrived. These judges
get what the host printed (its usable sections and host-side verdicts), what EC2 says of it, and the batch's
AWS view (a stream lookup, the clock), and return a Verdict — or, for the opt-in canary, a `Canary` to search
for with the rest of the batch (include/logs/canary.py) before its verdict is known.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from include.checks import parsers
from include.core.status import CheckStatus, Verdict

SHIPS_CHECK = "cwagent.ships_audit_log"


@dataclass(frozen=True)
class Canary:
    instance_id: str
    group: str
    stream: str
    token: str  # "ec2-audit-canary <batch tag> <uuid>"

    @property
    def tag(self) -> str:
        return self.token.split(" ")[1]


class AwsRefused(Exception):
    """CloudWatch Logs refused a lookup for this host's group (invalid name, access denied, throttled past the
    client's retries): that host's check is ERROR with AWS's reason, and the rest of the batch is judged."""


# CloudWatch Logs' own pattern for a log group name (CreateLogGroup: 1-512 of [.-_/#A-Za-z0-9]).
LOG_GROUP_NAME = re.compile(r"[.\-_/#A-Za-z0-9]{1,512}")


def refuse_invalid_group(group: str, where: str = "") -> None:
    """A name AWS would refuse is never sent: that host's check is ERROR, saying why."""
    if not LOG_GROUP_NAME.fullmatch(group):
        raise AwsRefused(f"log group {group!r}{f' (from {where})' if where else ''} is not a valid CloudWatch Logs "
                         "group name: nothing can be delivered there")


class StreamDescriber(Protocol):
    def describe(self, group: str, stream: str) -> dict | None:
        """The stream's DescribeLogStreams entry, None when it does not exist; raises AwsRefused."""


@dataclass(frozen=True)
class AwsView:
    """The batch's AWS side, and the run's choices the judges need."""

    lookup: StreamDescriber
    now: Callable[[], datetime]
    stream_max_age_minutes: int = 120
    canary: bool = False


@dataclass(frozen=True)
class HostFacts:
    """What one host printed and what EC2 says of it."""

    instance_id: str
    outputs: Mapping[str, str]  # usable sections only (not missing, repeated or cut)
    verdicts: Mapping[str, Verdict]  # host-side verdicts
    identity: Mapping[str, str | None]  # how the agent resolves its placeholders on this host
    trusted: Mapping[str, str | None]  # EC2's instance id, private IP and DNS name: the only names that count
    # Where the running agent ships audit.log (parsers.stream_targets, resolved once for both judges), or why
    # that cannot be known.
    targets: list[parsers.StreamTarget] | Verdict


def log_stream_fresh(host: HostFacts, aws: AwsView) -> Verdict:
    """The stream the running agent uses, if it is provably this host's, received an event recently."""
    if "cwagent_config" not in host.outputs:
        return Verdict.error("no complete agent config output")
    ships = host.verdicts.get(SHIPS_CHECK, Verdict.passed(""))
    if ships.status == CheckStatus.FAIL:
        return Verdict.failed("the agent config does not ship audit.log, so no stream can be fresh")
    if ships.status == CheckStatus.ERROR:
        return Verdict.error(f"agent config not judged: {ships.detail}"[:300])
    targets = host.targets
    if isinstance(targets, Verdict):
        return targets
    not_own = {(t.group, t.stream): why for t in targets if (why := parsers.attribution_problem(t, host.trusted))}
    try:
        # Streams that are not this host's are never looked up: their freshness could only mislead.
        observed = {(t.group, t.stream): None if (t.group, t.stream) in not_own else _describe(aws, t)
                    for t in targets}
    except AwsRefused as exc:
        return Verdict.error(str(exc)[:300])
    return parsers.judge_stream_freshness(observed, aws.now(), aws.stream_max_age_minutes, not_own)


def _describe(aws: AwsView, target: parsers.StreamTarget) -> dict | None:
    refuse_invalid_group(target.group, target.source)
    return aws.lookup.describe(target.group, target.stream)


def canary_delivered(host: HostFacts, aws: AwsView) -> Verdict | Canary:
    """This host's marker, written through its kernel audit, arrives in the stream its agent uses.

    Returns where to look (a Canary, searched with the batch's others by include/logs/canary.py), or the verdict
    when there is nothing to look for."""
    if not aws.canary:
        return Verdict.not_applicable("opt-in: run with canary=true")
    token = parsers.canary_token(host.outputs)
    if isinstance(token, Verdict):
        return token
    if host.verdicts.get(SHIPS_CHECK, Verdict.passed("")).status == CheckStatus.FAIL:
        return Verdict.failed("canary written, but the agent config does not ship audit.log")
    targets = host.targets
    if isinstance(targets, Verdict):
        return targets
    return Canary(host.instance_id, targets[0].group, targets[0].stream, token)
