"""The remediation plan: from one audit day's evidence, what would run on which host, for approval. Pure.

`plan(items, log_group)` → `RemediationPlan`; `describe(plan)` is the markdown the approver reads;
`to_json` / `from_json` carry it through XCom with its `plan_hash`, so an approval records exactly the plan
that was shown (a plan changed in any field has another hash; `from_json` refuses one that does not match).

Only NON_COMPLIANT hosts are planned: a host that is ERROR, UNREACHABLE, AUTH_FAILED or HOST_KEY_MISMATCH was
not seen (or not trusted), and we never change what we could not see. The commands come only from the fixes'
constants (include/checks/fixes.py); instance data (ids, names, addresses) is carried beside them as data.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from include.checks import fixes
from include.checks.catalogue import CATALOGUE, Check
from include.core.status import Status
from include.evidence.records import EvidenceItem

PLAN_VERSION = 1
RULES_CHECK = "auditd.rules_loaded"
IMMUTABLE_CHECK = "auditd.immutable"
UNVERIFIED = frozenset(s.value for s in (Status.ERROR, Status.UNREACHABLE, Status.AUTH_FAILED, Status.HOST_KEY_MISMATCH))
UNVERIFIED_REASON = "not seen or not trusted on the audit day: we never change what we could not see"
NO_LOG_GROUP = "no `log_group` was given for this run: set it to have the agent ship the audit log"


@dataclass(frozen=True)
class PlannedStep:
    command: str  # a fixes.py constant
    stdin: str = ""  # the rendered content sent on stdin ("" = none)


@dataclass(frozen=True)
class PlannedFix:
    fix: str  # Fix.name
    check_ids: tuple[str, ...]  # the failed checks it addresses (one fix may serve several: auditd.start)
    summary: str
    steps: tuple[PlannedStep, ...]


@dataclass(frozen=True)
class ManualItem:
    check_id: str
    reason: str


@dataclass(frozen=True)
class HostPlan:
    instance_id: str
    name: str
    address: str
    region: str
    account_id: str
    audit_date: str
    status: str
    failed_checks: tuple[str, ...]
    advisory_failed: tuple[str, ...]
    fixes: tuple[PlannedFix, ...]
    manual: tuple[ManualItem, ...]
    # the current evidence the plan was built from (re-verify compares against it)
    evidence_run_id: str
    evidence_output_sha256: str
    host_key_fingerprint: str
    transport: str


@dataclass(frozen=True)
class NotPlanned:
    instance_id: str
    name: str
    status: str
    reason: str


@dataclass(frozen=True)
class RemediationPlan:
    audit_date: str
    log_group: str
    include_advisory: bool
    hosts: tuple[HostPlan, ...]  # hosts with at least one automatic fix, by instance id
    not_planned: tuple[NotPlanned, ...] = field(default=())  # failing hosts left alone, and why
    version: int = PLAN_VERSION
    profile: str = ""  # the day's profile: re-verification judges under it

    @property
    def hash(self) -> str:
        return plan_hash(self)


def _as_item(item: EvidenceItem | Mapping[str, Any]) -> EvidenceItem:
    return item if isinstance(item, EvidenceItem) else EvidenceItem.from_item(item)


def _immutable(item: EvidenceItem) -> bool:
    return item.checks.get(IMMUTABLE_CHECK, {}).get("status") == "PASS"


def plan(items: Iterable[EvidenceItem | Mapping[str, Any]], log_group: str = "", *,
         catalogue: Iterable[Check] = CATALOGUE, include_advisory: bool = False,
         audit_date: str = "", max_hosts: int | None = None) -> RemediationPlan:
    """The hosts whose failed checks have an automatic fix, each with the steps that would run.

    `log_group` (the run's param) is validated when given; without it the agent fragment is manual.
    `include_advisory` also plans fixes for `advisory_failed` (failures outside the profile). Past `max_hosts`
    (by instance id) hosts are listed as not planned: one approval never changes an unbounded fleet."""
    fragment = fixes.agent_fragment(log_group) if log_group else ""  # validates the name (ValueError)
    by_id = {c.id: c for c in catalogue}
    hosts: list[HostPlan] = []
    skipped: list[NotPlanned] = []
    dates: set[str] = set()
    profiles: set[str] = set()
    for item in map(_as_item, items):
        if item.item_type != "instance":
            continue
        dates.add(item.audit_date)
        profiles.add(item.profile)
        failing = list(item.failed_checks) + (list(item.advisory_failed) if include_advisory else [])
        if item.status != Status.NON_COMPLIANT.value:
            if item.status in UNVERIFIED:
                skipped.append(NotPlanned(item.instance_id, item.display_name, item.status, UNVERIFIED_REASON))
            elif failing:
                skipped.append(NotPlanned(item.instance_id, item.display_name, item.status,
                                          f"status {item.status}: only NON_COMPLIANT hosts are planned"))
            continue
        planned: dict[str, PlannedFix] = {}
        manual: list[ManualItem] = []
        for cid in dict.fromkeys(failing):
            check = by_id.get(cid)
            fix = check.fix if check else None
            if fix is None:
                manual.append(ManualItem(cid, "no fix is declared for this check"))
            elif not fix.automatic:
                manual.append(ManualItem(cid, fix.manual))
            elif cid == RULES_CHECK and _immutable(item):
                manual.append(ManualItem(cid, fixes.IMMUTABLE_REASON))
            elif fix.needs_log_group and not fragment:
                manual.append(ManualItem(cid, NO_LOG_GROUP))
            elif fix.name in planned:
                prev = planned[fix.name]
                planned[fix.name] = PlannedFix(prev.fix, prev.check_ids + (cid,), prev.summary, prev.steps)
            else:
                steps = tuple(PlannedStep(s.command, fragment if s.stdin == fixes.STDIN_AGENT_FRAGMENT else "")
                              for s in fix.steps)
                planned[fix.name] = PlannedFix(fix.name, (cid,), fix.summary, steps)
        if not planned:
            skipped.append(NotPlanned(item.instance_id, item.display_name, item.status,
                                      "no automatic fix for its failed checks: " +
                                      "; ".join(f"{m.check_id}: manual" for m in manual)))
            continue
        hosts.append(HostPlan(
            instance_id=item.instance_id, name=item.display_name, address=item.address or item.private_ip,
            region=item.region, account_id=item.account_id, audit_date=item.audit_date, status=item.status,
            failed_checks=tuple(item.failed_checks), advisory_failed=tuple(item.advisory_failed),
            fixes=tuple(planned.values()), manual=tuple(manual), evidence_run_id=item.run_id,
            evidence_output_sha256=item.output_sha256, host_key_fingerprint=item.host_key_fingerprint,
            transport=item.transport))
    if len(dates) > 1 or (audit_date and dates - {audit_date}):
        raise ValueError(f"a plan is for one audit day{' (' + audit_date + ')' if audit_date else ''}, "
                         f"got items of {sorted(dates)}")
    audit_date = audit_date or next(iter(dates), "")
    hosts.sort(key=lambda h: h.instance_id)
    if max_hosts is not None and len(hosts) > max_hosts:
        skipped += [NotPlanned(h.instance_id, h.name, h.status, f"over max_hosts ({max_hosts}): plan it in another run")
                    for h in hosts[max_hosts:]]
        hosts = hosts[:max_hosts]
    profiles.discard("")
    if len(profiles) > 1:  # re-verification judges under one profile: the day's
        raise ValueError(f"the day's items were judged under several profiles {sorted(profiles)}: plan per profile")
    return RemediationPlan(audit_date=audit_date, log_group=log_group, include_advisory=include_advisory,
                           hosts=tuple(hosts), not_planned=tuple(sorted(skipped, key=lambda n: n.instance_id)),
                           profile=next(iter(profiles), ""))


# ---------------------------------------------------------------- the runner's own check

def catalogue_problem(h: HostPlan, log_group: str, catalogue: Iterable[Check] = CATALOGUE) -> str:
    """Why this host's planned fixes are not exactly the catalogue's ("" when they are), checked by the runner
    before it connects: a plan is data that travelled (XCom, a file), and a hash proves only that it is the
    one approved, not that what it says to run is a fix. Each fix must be the catalogue's automatic fix of
    every check it names (a check the host failed), step for step: the same command, and on stdin only what
    the catalogue says (the agent fragment rendered from the plan's own validated log group)."""
    by_id = {c.id: c for c in catalogue}
    failed = set(h.failed_checks) | set(h.advisory_failed)
    if not h.fixes:
        return "the plan names no fix for this host"
    for f in h.fixes:
        if not f.check_ids:
            return f"fix {f.fix!r} names no check"
        for cid in f.check_ids:
            check = by_id.get(cid)
            fix = check.fix if check else None
            if fix is None or not fix.automatic or fix.name != f.fix:
                return f"fix {f.fix!r} is not the catalogue's automatic fix for {cid!r}"
            if cid not in failed:
                return f"fix {f.fix!r} names {cid!r}, which this host did not fail"
        expected = fixes_by_name(catalogue)[f.fix].steps
        if len(f.steps) != len(expected):
            return f"fix {f.fix!r} has {len(f.steps)} steps, the catalogue's has {len(expected)}"
        for i, (step, want) in enumerate(zip(f.steps, expected), 1):
            if step.command != want.command:
                return f"fix {f.fix!r} step {i} is not the catalogue's command"
            try:
                stdin = fixes.agent_fragment(log_group) if want.stdin == fixes.STDIN_AGENT_FRAGMENT else ""
            except ValueError as exc:
                return f"fix {f.fix!r} step {i}: {exc}"
            if step.stdin != stdin:
                return f"fix {f.fix!r} step {i} sends other bytes on stdin than the catalogue renders"
    return ""


def fixes_by_name(catalogue: Iterable[Check] = CATALOGUE) -> dict[str, fixes.Fix]:
    return {c.fix.name: c.fix for c in catalogue if c.fix is not None}


# ---------------------------------------------------------------- travel: JSON, hash

def to_dict(p: RemediationPlan) -> dict[str, Any]:
    return asdict(p)


def _canonical(d: Mapping[str, Any]) -> bytes:
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def plan_hash(p: RemediationPlan) -> str:
    """SHA-256 of the plan's canonical JSON: every field (hosts, steps, stdin, evidence) is in it."""
    return hashlib.sha256(_canonical(to_dict(p))).hexdigest()


def to_json(p: RemediationPlan) -> str:
    return json.dumps({"plan": to_dict(p), "sha256": plan_hash(p)}, sort_keys=True)


def from_dict(d: Mapping[str, Any]) -> RemediationPlan:
    hosts = tuple(HostPlan(**{
        **h, "failed_checks": tuple(h["failed_checks"]), "advisory_failed": tuple(h["advisory_failed"]),
        "fixes": tuple(PlannedFix(f["fix"], tuple(f["check_ids"]), f["summary"],
                                  tuple(PlannedStep(**s) for s in f["steps"])) for f in h["fixes"]),
        "manual": tuple(ManualItem(**m) for m in h["manual"])}) for h in d["hosts"])
    return RemediationPlan(audit_date=d["audit_date"], log_group=d["log_group"],
                           include_advisory=d["include_advisory"], hosts=hosts,
                           not_planned=tuple(NotPlanned(**n) for n in d["not_planned"]), version=d["version"],
                           profile=d.get("profile", ""))


def from_json(text: str) -> RemediationPlan:
    """The plan back, refused unless it is exactly the plan its hash was made from."""
    doc = json.loads(text)
    p = from_dict(doc["plan"])
    if p.version != PLAN_VERSION:
        raise ValueError(f"plan version {p.version}, expected {PLAN_VERSION}")
    if plan_hash(p) != doc.get("sha256"):
        raise ValueError("plan does not match its hash: refusing a plan that is not the one approved")
    return p


# ---------------------------------------------------------------- the approval screen

_MD_SPECIAL = "\\`*_{}[]<>()#+!|~$"


def md(text: str) -> str:
    """Host data as inert markdown text: every markdown character escaped, one line."""
    text = " ".join(str(text).split())
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in text)


def _fence(text: str) -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}\n{text.rstrip(chr(10))}\n{ticks}\n\n"


def describe(p: RemediationPlan) -> str:
    """Markdown for the approval screen: what runs where, the evidence it rests on, the plan's hash."""
    n_fix = sum(len(h.fixes) for h in p.hosts)
    out = [f"# Remediation plan for {md(p.audit_date or '?')}\n\n",
           f"- **Plan sha256:** `{plan_hash(p)}` (the approval records this)\n",
           f"- **Hosts to change:** {len(p.hosts)} ({n_fix} fixes)\n",
           f"- **Log group for the audit log:** {('`' + p.log_group + '`') if p.log_group else '— (not set)'}\n",
           f"- **Advisory failures included:** {'yes' if p.include_advisory else 'no'}\n",
           f"- **Profile (re-verification judges under it):** {md(p.profile or 'audit-trail')}\n"]
    for h in p.hosts:
        out.append(f"\n## {md(h.instance_id)} — {md(h.name) or '(no name)'}\n\n"
                   f"- {md(h.address) or '—'} · {md(h.account_id) or '—'} {md(h.region) or '—'} · status {md(h.status)}\n"
                   f"- failed: {', '.join(md(c) for c in h.failed_checks) or '—'}"
                   f"{'; advisory: ' + ', '.join(md(c) for c in h.advisory_failed) if h.advisory_failed else ''}\n"
                   f"- current evidence: run {md(h.evidence_run_id)}, output sha256 {md(h.evidence_output_sha256)}, "
                   f"reached by {md(h.transport) or '—'} {md(h.host_key_fingerprint)}\n\n")
        for f in h.fixes:
            out.append(f"\n### fix `{f.fix}` for {', '.join(f.check_ids)}\n\n{f.summary}\n\n")
            for i, s in enumerate(f.steps, 1):
                out.append(f"Step {i}:\n\n" + _fence(s.command))
                if s.stdin:
                    out.append(f"with stdin (sha256 {hashlib.sha256(s.stdin.encode()).hexdigest()}):\n\n"
                               + _fence(s.stdin))
        for m in h.manual:
            out.append(f"- manual `{m.check_id}`: {m.reason}\n")
    if p.not_planned:
        out.append("\n## Not planned\n\n| instance | name | status | why |\n| --- | --- | --- | --- |\n")
        out += [f"| {md(n.instance_id)} | {md(n.name)} | {md(n.status)} | {md(n.reason)} |\n" for n in p.not_planned]
    return "".join(out)
