"""A name identifies a host only while it is unique: the run decides it once, across its batches.

`cwagent.log_stream_fresh` counts a stream as a host's own when its group or stream names the instance id, or
a name EC2 or the host gives it: its private IP, `ip-a-b-c-d`, its private DNS name, its hostname. Only the
instance id is unique by construction. AMI clones share a baked hostname (and instances in two VPCs can share a
private IP), so two agents ship into one stream and each host's PASS rests on the other's events.

A batch judges each host as its output arrives and cannot wait for the run's other batches, so it cannot know
a clone checked later, elsewhere. Each evidence item therefore records (include/evidence/records.py, only when
non-empty) `stream_names`: every (group, stream) the host's agent ships audit.log to that does not name its
instance id (its claims), and `stream_attributed_by_name`: the (group, stream) its log_stream_fresh PASS rests
on by such a name, unless its canary proved delivery. The run-level step (include/tasks/audit.py: store_summary),
which runs after every batch and reads the day's items anyway, finds the names another instance of the day
also claims and corrects the verdicts of this run's hosts that rest on them: log_stream_fresh FAIL naming the
other instance(s), re-scored under the run's profile and waivers, the original verdict kept in `amended`. The
correction is a new observation of the host's day (seq + 1), written only while the one it corrects is still
current; the corrected observation stays readable as a version (include/evidence/store.py).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from include.checks.parsers import StreamTarget, _names
from include.core.host import Host
from include.core.record import plain
from include.core.scoring import INCOMPLETE_DETAIL, scored
from include.core.status import CheckStatus, Status, Verdict
from include.evidence.records import EvidenceItem

log = logging.getLogger(__name__)

STREAM_CHECK = "cwagent.log_stream_fresh"
CANARY_CHECK = "cwagent.canary_delivered"
# What store_summary's read must project (checked_at: which observation the decision was made on).
FIELDS = ("stream_names", "stream_attributed_by_name", "amended", "checked_at")

Name = tuple[str, str]  # (log group, log stream)


def _names_instance(name: Name, instance_id: str) -> bool:
    return _names(f"{name[0]}\n{name[1]}", instance_id)


def claims(instance_id: str, targets: list[StreamTarget] | Verdict) -> list[Name]:
    """The (group, stream) pairs the host's agent ships audit.log to that do not name its instance id: those
    another instance may also resolve to. A stream named by the instance id is never a claim."""
    if isinstance(targets, Verdict):
        return []
    return sorted({(t.group, t.stream) for t in targets if not _names_instance((t.group, t.stream), instance_id)})


def attributed_by_name(instance_id: str, verdicts: Mapping[str, Verdict]) -> Name | None:
    """The stream a log_stream_fresh PASS rests on when only a non-unique name (hostname, IP, DNS name) made it
    this host's; None when it names the instance id, when the check did not pass, or when the canary proved
    delivery (then no name needs to be unique)."""
    stream = verdicts.get(STREAM_CHECK)
    if stream is None or stream.status != CheckStatus.PASS or stream.stream is None:
        return None
    canary = verdicts.get(CANARY_CHECK)
    if canary is not None and canary.status == CheckStatus.PASS:
        return None
    return None if _names_instance(stream.stream, instance_id) else stream.stream


def _name(value) -> Name | None:
    """A stored [group, stream] (DynamoDB gives lists) → tuple; None when malformed."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, str) for v in value):
        return value[0], value[1]
    return None


@dataclass(frozen=True)
class Collision:
    instance_id: str
    name: Name
    others: tuple[str, ...]  # the other instances whose agents name the same (group, stream)

    def detail(self) -> str:
        shown = ", ".join(self.others[:5]) + (f" and {len(self.others) - 5} more" if len(self.others) > 5 else "")
        return (f"stream {self.name[0]}/{self.name[1]} is also the stream of {shown}: a hostname identifies a host "
                "only while unique (AMI clones share theirs); use {instance_id} in log_stream_name, or run with "
                "canary=true")


def collisions(items: Iterable[EvidenceItem], run_id: str) -> dict[str, Collision]:
    """Pure. Of the day's current items (projected with FIELDS), this run's hosts whose log_stream_fresh PASS
    rests on a name that another instance of the day also claims. Items already amended are left alone (a
    retried step corrects nothing twice)."""
    items = list(items)
    claimants: dict[Name, set[str]] = defaultdict(set)
    for it in items:
        for value in it.stream_names or []:
            if (name := _name(value)) is not None:
                claimants[name].add(it.instance_id)
    found = {}
    for it in items:
        name = _name(it.stream_attributed_by_name)
        if name is None or it.run_id != run_id or it.amended:
            continue
        if others := sorted(claimants[name] - {it.instance_id}):
            found[it.instance_id] = Collision(it.instance_id, name, tuple(others))
    return found


def _host(item: EvidenceItem) -> Host:
    """What waivers select on (instance id, tags), from the stored item."""
    return Host(str(item.instance_id), str(item.region), str(item.account_id), item.address or None,
                item.private_ip or None, tags={str(k): str(v) for k, v in (item.tags or {}).items()})


def amend(item: EvidenceItem, collision: Collision, decides: Callable[[str], bool], profile_name: str,
          apply_waivers: Callable[[Host, Status, list[str]], tuple[Status, list[str], list[str]]],
          run_id: str, at: str) -> dict:
    """Pure. The corrected item: log_stream_fresh FAIL, re-scored as the batch scores (scoring.scored, then the
    waivers), with what was observed before kept in `amended` (evidence is never dropped). The item to write
    as the host's next observation (a DynamoDB item, as instance_item's): the store sets its seq and hash."""
    checks = {cid: dict(c) for cid, c in (item.checks or {}).items()}
    before = checks.get(STREAM_CHECK)
    checks[STREAM_CHECK] = {"status": CheckStatus.FAIL.value, "detail": collision.detail()[:300]}
    verdicts = {cid: Verdict(CheckStatus(c["status"]), str(c.get("detail", ""))) for cid, c in checks.items()}
    # What the batch knew of the output's completeness is in its detail (scoring.scored said it there).
    complete = item.status_detail != INCOMPLETE_DETAIL
    score, detail = scored(verdicts, decides, profile_name, complete, bool(item.output_truncated))
    status, failed, waived = apply_waivers(_host(item), score.status, score.failed)
    corrected = {**item.to_item(), "status": status.value, "status_detail": detail[:500], "failed_checks": failed,
            "advisory_failed": score.advisory, "waived_checks": waived, "checks": checks,
            "amended": {"at": at, "by_run": run_id, "reason": collision.detail()[:500],
                        "other_instances": list(collision.others),
                        "was": {"status": item.status, "status_detail": item.status_detail,
                                "failed_checks": list(item.failed_checks or []),
                                "advisory_failed": list(item.advisory_failed or []),
                                "waived_checks": list(item.waived_checks or []),
                                "checks": {STREAM_CHECK: before} if before else {}}}}
    # Not the corrected observation's hash: the store sets it over the stored item (seq included), so the digest
    # vouches for no staged (older) copy.
    return {**corrected, "item_sha256": ""}


def settle(store, items: list[EvidenceItem], audit_date: str, run_id: str, profile, waivers: list, at: datetime,
           ) -> list[EvidenceItem]:
    """The run-level step: correct this run's hosts whose stream rests on a name another instance also claims.

    `items` are the day's current items as store_summary read them (projected with FIELDS); the full items of
    the hosts to correct are read by key (consistent) and corrected only if they are still the observation this
    run made: the correction is the host's next observation, written on condition that the seq read is still
    current (a newer check of the host is never replaced), the corrected one kept as a version. Returns `items`
    with the corrected ones' status and amendment, for the summary and the digest."""
    from include.core.clock import iso
    from include.verify.waivers import apply_waivers

    found = collisions(items, run_id)
    if not found:
        return items
    read = {it.instance_id: it for it in items}
    corrected: dict[str, EvidenceItem] = {}
    for iid, stored in sorted(store.current_items(audit_date, sorted(found)).items()):
        full, seen = EvidenceItem.from_item(stored), read[iid]
        if full.item_type != "instance" or full.amended or (full.run_id, full.checked_at) != (seen.run_id,
                                                                                           seen.checked_at):
            continue  # replaced or corrected since the read: that observation decides
        new = amend(full, found[iid], profile.decides, profile.name,
                    lambda host, status, failed: apply_waivers(host, status, failed, waivers, audit_date),
                    run_id, iso(at))
        # Every stored attribute carried over (also those EvidenceItem does not name), the correction on top.
        written = store.replace_observation({**plain(stored), **new}, seen=stored)
        if written is not None:
            corrected[iid] = EvidenceItem.from_item(written)  # whole: it holds every attribute the read projected
            log.warning("%s: %s", iid, found[iid].detail())
    return [corrected.get(it.instance_id, it) for it in items]
