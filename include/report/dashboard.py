"""The compliance dashboard's pages (served by plugins/ec2_audit_dashboard.py inside the Airflow UI).

Pure rendering from evidence already read: fleet compliance over time, one day's audit-trail compliance beside
the CIS hardening score and its gaps, the failing hosts with their failed checks and remediation, and one
host's history with its remediation records (what ran, step by step). Relative links only, so the pages work under any URL prefix and inside the Airflow UI's
iframe. The HTML comes from include/report/templates/dashboard_*.html, autoescaped: tags are user data.
"""
from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from typing import Any

from include.core.scoring import hardening_summary, judged_under
from include.core.status import Status
from include.evidence.observation import CURRENT
from include.evidence.records import EvidenceItem, RunSummary
from include.remediation.records import FixRun, RemediationRecord, StepRun
from include.report.rendering import render
from include.verify.profiles import HARDENING_CHECKS

COLOURS = Status.colours()


def _unverified(item: EvidenceItem) -> bool:
    status = Status.parse(item.status)
    return status is None or status.unverified


def fleet_page(day: str | None, stored: RunSummary | None, items: list[EvidenceItem], trend_png: bytes | None,
               check_meta: dict[str, dict], remediations: Iterable[RemediationRecord] = ()) -> str:
    """`stored`: the day's run summary (EvidenceStore.run_summary); `remediations`:
    RemediationStore.day_remediations(day), shown as the day's "Remediated" section."""
    from include.report.build import remediation_rows

    if day is None:
        return render("dashboard_fleet.html", day=None)
    failing = sorted((it for it in items if it.status == Status.NON_COMPLIANT),
                     key=lambda it: (-len(it.failed_checks), it.instance_id))
    other = sorted((it for it in items if _unverified(it)), key=lambda it: it.instance_id)
    return render(
        "dashboard_fleet.html", day=day, compliance_pct=stored.compliance_pct if stored else None,
        checked=stored.checked if stored else len(items), discovered=stored.discovered if stored else "?",
        profile=", ".join(judged_under(items)) or "audit-trail",
        hardening=hardening_summary(items, HARDENING_CHECKS), check_meta=check_meta, colours=COLOURS,
        trend_src=f"data:image/png;base64,{base64.b64encode(trend_png).decode()}" if trend_png else None,
        failing=[{"instance_id": it.instance_id, "name": it.display_name, "region": it.region,
                  "checks": [{"id": c, "severity": check_meta.get(c, {}).get("severity", "?"),
                              "remediation": check_meta.get(c, {}).get("remediation", "")}
                             for c in it.failed_checks]} for it in failing],
        unverified=[{"instance_id": it.instance_id, "name": it.display_name, "status": it.status,
                     "detail": it.status_detail[:200]} for it in other],
        remediated=remediation_rows(remediations, detail_chars=300),
        manifest_sha256=stored.manifest_sha256 if stored else "", seal_seq=stored.seal_seq if stored else 0)


def _remediation(record: RemediationRecord) -> dict:
    """One record for the host page: the report's outcome wording (a not_fixed reads as a failure) and every
    step of every fix with its command, exit status and output hash."""
    from include.report.build import outcome_view

    steps = []
    for fix in map(FixRun.from_item, record.fixes):
        result = fix.result + (f": {fix.detail}" if fix.detail else "")
        for step in map(StepRun.from_item, fix.steps):
            steps.append({"fix": fix.fix, "result": result, "command": step.command,
                          "exit_status": "not run" if step.exit_status is None else str(step.exit_status),
                          "ok": step.exit_status == 0, "output_sha256": step.output_sha256,
                          "stdin_sha256": step.stdin_sha256})
        if not fix.steps:  # refused or skipped before any step: still listed, with why
            steps.append({"fix": fix.fix, "result": result, "command": "(no step ran)", "exit_status": "not run",
                          "ok": False, "output_sha256": "", "stdin_sha256": ""})
    return {"day": record.audit_date, "outcome": outcome_view(record),
            "fixes": [f.fix for f in map(FixRun.from_item, record.fixes)], "approved_by": record.approved_by,
            "approved_at": record.approved_at, "before": record.before_status, "after": record.after_status,
            "before_failed": record.before_failed, "after_failed": record.after_failed,
            "plan_sha256": record.plan_sha256, "run": record.run_id, "ran_at": record.ran_at,
            "connection": record.connection, "host_key": record.host_key_fingerprint, "steps": steps,
            "earlier": [{k: str(e.get(k, "")) for k in ("run_id", "ran_at", "outcome", "approved_by")}
                        for e in record.earlier]}


def observation_rows(observations: Iterable[Mapping[str, Any]]) -> list[dict]:
    """One host's observations of a day (EvidenceStore.observations: the versions and the current item) as the
    host page lists them: by seq, oldest first, the current one last; why = trigger (+ its detail, read with
    .get: an optional attribute)."""
    ordered = sorted(observations, key=lambda o: (o.get("item_type") == CURRENT, int(o.get("seq") or 1)))
    rows = []
    for o in ordered:
        trigger, detail = str(o.get("trigger") or ""), str(o.get("trigger_detail") or "")
        rows.append({"seq": int(o.get("seq") or 1), "checked_at": str(o.get("checked_at") or ""),
                     "trigger": (f"{trigger}: {detail}" if detail else trigger) or "— (before triggers)",
                     "status": str(o.get("status") or ""), "failed": ", ".join(map(str, o.get("failed_checks") or [])),
                     "run": str(o.get("run_id") or ""), "current": o.get("item_type") == CURRENT})
    return rows


def host_page(instance_id: str, history: list[EvidenceItem],
              remediations: Iterable[RemediationRecord] = (), *, day: str | None = None,
              observations: Iterable[Mapping[str, Any]] = ()) -> str:
    """`remediations`: RemediationStore.host_remediations(instance_id), newest day first. `observations`:
    EvidenceStore.observations(instance_id, day), every observation of the picked `day`."""
    fixes = [_remediation(r) for r in remediations]
    records = history
    latest = records[0] if records else EvidenceItem(instance_id)
    rows = [{"day": it.audit_date, "status": it.status, "failed": ", ".join(it.failed_checks),
             "advisory": ", ".join(it.advisory_failed), "checked_at": it.checked_at,
             "sha": it.output_sha256[:16], "run": it.run_id, "reached_by": it.reached_by} for it in records]
    return render("dashboard_host.html", instance_id=instance_id, history=rows, name=latest.display_name,
                  region=latest.region, account_id=latest.account_id, host_key=latest.host_key_fingerprint or "none (not reached over SSH)",
                  colours=COLOURS, remediations=fixes, day=day, observations=observation_rows(observations))
