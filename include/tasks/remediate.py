"""The Airflow-facing steps of remediation (dags/ec2_audit_remediate.py): plan → approval → fixes → re-verify → records.

The chain an auditor (or a change board) asks for is stored beside the day's evidence, never over it:
- the plan is built from the day's stored items only (include/remediation/plan.py) and carried with its SHA-256;
  the approval screen shows that hash, and the fixes run only from a plan whose hash still matches;
- the approval is Airflow's human-in-the-loop ApprovalOperator: who answered, when, for which plan hash, is
  kept per day (`RemediationDecision`), and so is a rejection or no answer (then nothing runs);
- fixes run through the remediation connection (include/remediation/runner.py): pinned keys only, and only on hosts
  whose evidence is still the one the plan was built from;
- each touched host is re-verified through the audit's own verify path and read-only login: an observation of
  the UTC day the re-check starts (`trigger` remediation; what it replaces is kept as a version), whose result
  goes into that host's `RemediationRecord`, one per attempt;
- the day's report is rebuilt with its "Remediated" section.
"""
from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import timedelta
from typing import Any

from include.core.status import CheckStatus
from include.evidence.records import EvidenceItem
from include.remediation.records import RemediationDecision, RemediationRecord
from include.remediation.results import PLAN_HASH_PARAM, Answer, Applied, AppliedHost, Planned, Published, Reverified
from include.remediation.store import RemediationStore
from include.settings.params import REMEDIATE_SSH_CONN_ID, SSH_CONN_ID, RemediateParams

log = logging.getLogger(__name__)

ADDRESS_KINDS = ("private_ip", "public_ip", "private_dns")
UNVERIFIED = "unverified"  # fixes ran, re-verification has not (yet) said what they achieved
APPLYING = "applying"  # approved, fixes running now (the attempt's record before its outcome)
RECHECK_TRIGGER = "remediation"  # the re-check's `trigger` (include/evidence/observation.py TRIGGERS)


def store_of(params: RemediateParams):
    from include.evidence.store import EvidenceStore

    return EvidenceStore.open(params.evidence_table)


def _now() -> str:
    from include.core.clock import iso, utc_now

    return iso(utc_now())


# ------------------------------------------------------------------ 1. the plan

def resolve_day(params: RemediateParams, triggering_events: Any = None) -> str:
    """The param, else the day of the evidence event that triggered the run, else the latest audited day."""
    if params.audit_date:
        return params.audit_date
    for events in (triggering_events or {}).values():
        for event in reversed(list(events)):
            day = (getattr(event, "extra", None) or {}).get("audit_date")
            if day:
                return day
    day = store_of(params).latest_audit_day()
    if not day:
        raise ValueError(f"no audit day is stored in {params.evidence_table}: run ec2_audit_compliance first")
    return day


def build_plan(params: RemediateParams, day: str, run_id: str) -> Planned:
    """The plan for `day` as the approver will see it. A dry run (or a plan with no host) ends here, recorded."""
    from include.remediation import plan as remediation

    if not params.dry_run:
        remediation_login(params)  # refused at the start, before anyone is asked to approve
    store = store_of(params)
    p = remediation.plan(store.day_items(day), params.log_group or "", include_advisory=params.include_advisory,
                         audit_date=day, max_hosts=params.max_hosts)
    markdown = remediation.describe(p)
    planned = Planned(day, remediation.to_json(p), p.hash, markdown, hosts=len(p.hosts),
                      fixes=sum(len(h.fixes) for h in p.hosts), dry_run=params.dry_run, not_planned=len(p.not_planned))
    log.info("remediation plan for %s (sha256 %s): %d hosts, %d fixes; %d not planned\n%s", day, p.hash,
             planned.hosts, planned.fixes, planned.not_planned, markdown)
    planned = replace(planned, plan_file=_write_plan_file(params, day, run_id, markdown))
    # The plan itself, beside its markdown: apply_fixes re-reads this file, not the XCom, and runs it only if
    # its hash is the one the approver's answer carries.
    _write_plan_file(params, day, run_id, remediation.to_json(p), "json")
    if params.dry_run or not p.hosts:
        decision = "dry_run" if params.dry_run else "nothing_to_do"
        RemediationStore(store).add_decision(day, RemediationDecision(
            run_id=run_id, decision=decision, plan_sha256=p.hash, hosts=planned.hosts, fixes=planned.fixes,
            at=_now(), detail="dry run: nothing was asked or run" if params.dry_run else "no host has an automatic fix"),
            params.ttl_days)
    return planned


def plan_file_name(day: str, run_id: str, ext: str = "md") -> str:
    from include.report import storage as report_store

    return f"remediation-plan-{day}-{report_store.safe_name(run_id, 120)}.{ext}"


def _plan_url(params: RemediateParams, day: str, run_id: str, ext: str) -> str:
    from include.report import storage as report_store

    return report_store.join(params.audit_params("").resolved_report_dir(), plan_file_name(day, run_id, ext))


def _write_plan_file(params: RemediateParams, day: str, run_id: str, text: str, ext: str = "md") -> str:
    """The plan beside the day's report, so a dry run's output outlives the task log."""
    from include.report import storage as report_store

    report_store.prepare(params.audit_params("").resolved_report_dir())
    url = _plan_url(params, day, run_id, ext)
    report_store.put(url, text.encode())
    return url


def read_plan_file(params: RemediateParams, day: str, run_id: str):
    """The run's plan as plan_fixes wrote it (`from_json` refuses one that does not match its own hash)."""
    from include.remediation import plan as remediation
    from include.report import storage as report_store

    url = _plan_url(params, day, run_id, "json")
    try:
        text = report_store.read_bytes(url).decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise RuntimeError(f"the plan file {url} could not be read ({type(exc).__name__}): nothing runs "
                           "(report_dir must be one place every worker reads, e.g. s3://)") from None
    try:
        return remediation.from_json(text)
    except (ValueError, KeyError, TypeError) as exc:
        raise RuntimeError(f"the plan file {url} is not a valid plan ({exc}): nothing runs") from None


def needs_approval(planned: Planned) -> bool:
    return planned.needs_approval


# ------------------------------------------------------------------ 2. the answer
# The answer (include/remediation/results.py Answer) carries the plan hash itself: the approval form's
# `plan_sha256` field, filled with the hash on the approval screen, comes back in its `params_input` and is stored
# with who answered and when (Airflow's HITL detail). The plan's own XCom is never the witness of what was approved.

def record_decision(params: RemediateParams, planned: Planned, answer: Answer, run_id: str) -> str:
    """The answer, stored as it arrives. An approval is recorded with the hash its answer carries (none: "")."""
    decision, by, at, answered = answer.decision, answer.by, answer.at, answer.plan_sha256
    detail = {"approved": "approved: the fixes run only from a plan with this hash",
              "rejected": "rejected: nothing ran on any host",
              "timed_out": f"no answer within {params.approval_timeout} min: nothing ran on any host",
              "no_answer": "the approval task failed without an answer: nothing ran on any host"}[decision]
    if decision == "approved" and answered != planned.sha256:
        detail = (f"approved without the shown plan's hash ({answered or 'none'} in the answer, "
                  f"{planned.sha256} shown): nothing runs")
    sha = answered if decision == "approved" else (answered or planned.sha256)
    RemediationStore(store_of(params)).add_decision(planned.audit_date, RemediationDecision(
        run_id=run_id, decision=decision, plan_sha256=sha, hosts=planned.hosts,
        fixes=planned.fixes, by=by, at=at or _now(), detail=detail), params.ttl_days)
    log.info("remediation of %s, plan %s: %s", planned.audit_date, sha, detail)
    return decision


def ensure_decision(params: RemediateParams, planned: Planned, run_id: str) -> str:
    """The run's answer as recorded by the approval task, else `no_answer` (the approval failed)."""
    for d in RemediationStore(store_of(params)).decisions(planned.audit_date):
        if d.run_id == run_id:
            return d.decision
    return record_decision(params, planned, Answer(), run_id)


# ------------------------------------------------------------------ 3. the fixes

def login_problem(remediation_login: str | None, audit_login: str) -> str:
    """Why the remediation login may not be used ("" when it may): it must be its own user. The audit's login
    is read-only by its sudoers; were it also the fixing login, the audit's key could change hosts and the
    re-verification (which uses it) would check with the hands that just changed them."""
    login = (remediation_login or "").strip()
    if not login:
        return f"connection {REMEDIATE_SSH_CONN_ID} needs a login (the remediation user)"
    if login == audit_login.strip():
        return (f"connection {REMEDIATE_SSH_CONN_ID} uses the login {login!r}, the audit's own ({SSH_CONN_ID}): "
                "remediation needs a user of its own, with its own key and sudoers lines")
    return ""


def remediation_login(params: RemediateParams) -> str:
    """The remediation login, refused (ValueError) when it is missing or the audit's: checked when a run that
    may change hosts starts (plan_fixes) and again before any connection (apply_fixes)."""
    from airflow.sdk import BaseHook

    from include.reach.choice import DEFAULT_SSH_LOGIN

    login = BaseHook.get_connection(REMEDIATE_SSH_CONN_ID).login
    audit = BaseHook.get_connection(SSH_CONN_ID).login or DEFAULT_SSH_LOGIN  # as re-verification reads it
    if problem := login_problem(login, audit):
        raise ValueError(problem)
    return login.strip()


def remediate_ssh_settings(params: RemediateParams):
    """The `ec2_audit_remediate_ssh` connection: its own login and key (the audit's stays read-only)."""
    from airflow.sdk import BaseHook

    from include.reach.choice import key_fields
    from include.reach.ssh import SshSettings

    login = remediation_login(params)
    conn = BaseHook.get_connection(REMEDIATE_SSH_CONN_ID)
    return SshSettings(
        username=login, **key_fields(conn.extra_dejson), port=int(conn.port or 22), connect_timeout=15.0,
        command_timeout=float(params.command_timeout), host_budget=host_budget(params))


def host_budget(params: RemediateParams) -> float:
    """Seconds one host may take (its SSH session, all its fixes' steps)."""
    return float(params.command_timeout) * 6 + 30


def apply_timeout(params: RemediateParams) -> timedelta:
    """apply_fixes' execution_timeout, from the run's params: every planned host's budget in waves of
    `concurrency`, plus a margin for the AWS reads before and the records after. Never shorter than that: a
    cut apply would leave fixes run and unrecorded."""
    waves = math.ceil(params.max_hosts / max(1, params.concurrency))
    return timedelta(seconds=waves * host_budget(params) + 600)


def _address_kind(hp, host) -> str | None:
    """Which of the instance's addresses the evidence was gathered on (None: none of them any more)."""
    return next((k for k in ADDRESS_KINDS if hp.address and getattr(host, k) == hp.address), None)


def _current_hosts(p) -> tuple[dict, dict[str, str]]:
    """The planned hosts as EC2 describes them now, at the address the evidence used; why others are not."""
    from include.fleet.discovery import hydrate
    from include.tasks.audit import ec2_client

    found, why = {}, {}
    by_region = defaultdict(list)
    for hp in p.hosts:
        by_region[hp.region].append(hp)
    for region, plans in by_region.items():
        hosts, _ = hydrate(ec2_client(region), region, [h.instance_id for h in plans], "private_ip")
        current = {h.instance_id: h for h in hosts}
        for hp in plans:
            host = current.get(hp.instance_id)
            kind = _address_kind(hp, host) if host else None
            if host is None:
                why[hp.instance_id] = "no longer running (or not in the aws_default account)"
            elif kind is None:
                why[hp.instance_id] = f"its address changed since the evidence ({hp.address}): audit it again"
            else:
                found[hp.instance_id] = (replace(host, address=hp.address), kind)
    return found, why


def _stale(store, p) -> dict[str, str]:
    """Hosts whose stored evidence is no longer the one the plan was built from (the day was re-audited):
    the planned hosts' items by key, not the whole day."""
    now = {it.instance_id: it for it in store.items_by_id(p.audit_date, [h.instance_id for h in p.hosts])}
    stale = {}
    for hp in p.hosts:
        it = now.get(hp.instance_id)
        run, sha, status = (it.run_id, it.output_sha256, it.status) if it else (None, None, None)
        if (run, sha) != (hp.evidence_run_id, hp.evidence_output_sha256):
            stale[hp.instance_id] = (f"its evidence changed since the plan (now run {run}, status "
                                     f"{status}): approve a new plan")
    return stale


def approved_plan(store, day: str, answer: Answer, run_id: str) -> tuple[str, str, str]:
    """(plan hash, by, at) of this run's approval, or RuntimeError: the answer must be an Approve by a person
    that carries a plan hash, and the decision stored for this run (by the approval task, as the answer
    arrived) must be that same approval of that same hash."""
    decision, by, at = answer.decision, answer.by, answer.at
    if decision != "approved":
        raise RuntimeError(f"not approved ({decision}): nothing runs")
    sha = answer.plan_sha256
    if not sha:
        raise RuntimeError(f"the approval carries no plan hash (its {PLAN_HASH_PARAM} field): nothing runs")
    recorded = [d for d in RemediationStore(store).decisions(day) if d.run_id == run_id]
    if not any(d.decision == "approved" and d.plan_sha256 == sha for d in recorded):
        raise RuntimeError(f"no recorded approval of plan {sha} for run {run_id} "
                           f"(recorded: {[(d.decision, d.plan_sha256) for d in recorded]}): nothing runs")
    return sha, by, at


def apply(params: RemediateParams, planned: Planned, answer: Answer, run_id: str) -> Applied:
    """Run the approved plan. Each host's record is stored as soon as its fixes ran (outcome unverified)."""
    from include.reach.hostkeys import PinStore
    from include.remediation import plan as remediation
    from include.remediation.runner import HostFixes, fix_hosts, refused

    store = store_of(params)
    approved_sha, by, at = approved_plan(store, planned.audit_date, answer, run_id)
    # The plan is re-read from its file and must be the one the approver's answer names; the XCom only says
    # which day (a wrong day's file has another hash).
    p = read_plan_file(params, planned.audit_date, run_id)
    if p.hash != approved_sha:
        raise RuntimeError(f"the plan to run (sha256 {p.hash}) is not the one approved ({approved_sha}): nothing runs")
    settings = remediate_ssh_settings(params)
    why = {h.instance_id: f"refused: {problem} (only the catalogue's fixes run)"
           for h in p.hosts if (problem := remediation.catalogue_problem(h, p.log_group))}
    why.update({k: v for k, v in _stale(store, p).items() if k not in why})
    current, gone = _current_hosts(p)
    why.update({k: v for k, v in gone.items() if k not in why})
    pins = PinStore(store.resource, store.table_name).load([h.instance_id for h in p.hosts])
    why.update({i: f"host-key pin could not be read ({r}): not connected" for i, r in pins.unread.items() if i not in why})
    runnable = [hp for hp in p.hosts if hp.instance_id not in why]
    results: dict[str, HostFixes] = {i: refused(i, r) for i, r in why.items()}
    hosts = {i: h for i, (h, _) in current.items()}
    approval = {"approved_by": by, "approved_at": at, "plan_sha256": p.hash, "connection": REMEDIATE_SSH_CONN_ID}
    # Recorded before anything runs: a fix's own `augenrules --load` writes rule deletions, and the watch's tamper
    # alert names the remediation run applying on that host (include/notify/tamper.py: remediation_lookup).
    for hp in runnable:
        RemediationStore(store).put_remediation(_record(hp, HostFixes(hp.instance_id, APPLYING, "fixes being applied"), APPLYING,
                                                        run_id, approval), params.ttl_days)
    for r in asyncio.run(fix_hosts(runnable, hosts, settings, pins.pins, params.concurrency)) if runnable else []:
        results[r.instance_id] = r
    for hp in p.hosts:
        r = results[hp.instance_id]
        outcome = UNVERIFIED if r.touched else ("refused" if r.result == "refused" else "failed")
        RemediationStore(store).put_remediation(_record(hp, r, outcome, run_id, approval), params.ttl_days)
    log.info("remediation of %s: %s", p.audit_date, {i: r.result for i, r in results.items()})
    return Applied(p.audit_date, p.profile, **approval, hosts={
        i: AppliedHost(r.result, r.detail, r.touched, current.get(i, (None, None))[1], list(r.fixes))
        for i, r in results.items()})


def _record(hp, r, outcome: str, run_id: str, approval: dict[str, str]) -> RemediationRecord:
    return RemediationRecord(
        host_id=hp.instance_id, audit_date=hp.audit_date, run_id=run_id, ran_at=_now(), name=hp.name,
        region=hp.region, account_id=hp.account_id, host_key_fingerprint=r.host_key_fingerprint,
        fixes=[f.to_item() for f in r.fixes], outcome=outcome, detail=r.detail, before_status=hp.status,
        before_failed=list(hp.failed_checks), before_run_id=hp.evidence_run_id,
        before_output_sha256=hp.evidence_output_sha256, **approval)


# ------------------------------------------------------------------ 4. the proof

def outcome_of(fixes: list[dict[str, Any]], host_result: str, after: EvidenceItem) -> tuple[str, str]:
    """fixed only when every check a fix addressed passes on re-verification; a failed step is failed."""
    addressed = list(dict.fromkeys(c for f in fixes for c in f.get("check_ids", [])))
    checks = after.checks or {}
    still = [c for c in addressed if (checks.get(c) or {}).get("status") != CheckStatus.PASS]
    status = after.status
    if host_result == "failed":
        return "failed", f"a fix failed; after: {status}" + (f", still failing {', '.join(still)}" if still else "")
    if not still and addressed:
        return "fixed", f"after: {status}; passes now: {', '.join(addressed)}"
    return "not_fixed", (f"after: {status} ({after.status_detail})".rstrip(" ()") +
                         f"; still failing: {', '.join(still) or '?'}")


def recheck_of(observations: list[dict], run_id: str) -> EvidenceItem | None:
    """Pure. The re-check this run stored, from a host's observations of the day (oldest first): its latest
    observation with this run id and trigger remediation (a later check of the host may be current by now)."""
    for item in reversed(observations):
        if item.get("run_id") == run_id and item.get("trigger") == RECHECK_TRIGGER:
            return EvidenceItem.from_item(item)
    return None


def reverify(params: RemediateParams, applied: Applied, run_id: str) -> Reverified:
    """Re-verify every touched host through the audit's verify path (its login, its checks, the day's
    profile). The re-check is an observation like any other, of the UTC day it starts (not the remediated day),
    `trigger` remediation, stored through the same path (what it replaces is kept as a version); each host's
    record gets the after state read back from that observation, and the outcome."""
    from include.core.clock import utc_now
    from include.fleet.batching import Batch
    from include.tasks.audit import ec2_client, logs_client, reseal_day, ssh_settings
    from include.verify.batch import RunContext, verify_batch

    day = applied.audit_date
    today = utc_now().strftime("%Y-%m-%d")  # contract: a re-check belongs to the UTC day it starts
    audit = params.audit_params(applied.profile)
    touched = applied.touched()
    store = store_of(params)
    groups = defaultdict(list)
    records = {r.host_id: r for r in RemediationStore(store).day_remediations(day) if r.run_id == run_id}
    for iid, h in touched.items():
        groups[(records[iid].region, h.address_kind or "private_ip")].append(iid)
    for (region, kind), ids in groups.items():
        audit_k = replace(audit, address=kind)
        ctx = RunContext(today, run_id, audit_k, ssh_settings(audit_k), trigger=RECHECK_TRIGGER)
        verify_batch(Batch(region=region, instance_ids=ids, label=f"re-verify {region}"), ctx, ec2_client(region),
                     logs_client(region), store)
    if groups:  # the re-checks are the day's observations now: sealed, and its summary in step (a retry reseals)
        reseal_day(store, today, run_id, RECHECK_TRIGGER, params.ttl_days, hosts=list(touched))
    outcomes = {}
    for iid in touched:
        after = recheck_of(store.observations(iid, today), run_id) or EvidenceItem(
            iid, today, status="ERROR", status_detail="not re-verified (no longer running?)")
        rec = records[iid]
        outcome, detail = outcome_of(rec.fixes, touched[iid].result, after)
        RemediationStore(store).put_remediation(replace(
            rec, outcome=outcome, detail=f"{touched[iid].detail} → {detail}",
            after_status=after.status, after_failed=list(after.failed_checks),
            after_advisory_failed=list(after.advisory_failed), after_checks=after.checks,
            after_checked_at=after.checked_at, after_output_sha256=after.output_sha256,
            after_host_key_fingerprint=after.host_key_fingerprint, after_day=today, after_seq=after.seq),
            params.ttl_days)
        outcomes[iid] = outcome
    log.info("re-verified %d hosts on %s: %s", len(outcomes), today, outcomes)
    return Reverified(day, outcomes)


def publish(params: RemediateParams, verified: Reverified) -> Published:
    """Rebuild the day's report (files only, no email) so it carries the Remediated section."""
    from include.evidence.sealed import Sealed
    from include.tasks import audit as pipeline

    day = verified.audit_date
    store = store_of(params)
    summary = store.run_summary(day)
    if summary is None:
        return Published(day)
    built = pipeline.build(params.audit_params(""), Sealed(day, summary.run_id, summary.mode or "live"))
    return Published(day, built.paths,
                     dict(Counter(r.outcome for r in RemediationStore(store).day_remediations(day))))
