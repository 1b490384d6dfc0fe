"""The daily report: pandas frame → HTML for mail clients, formula-safe CSV, JSON summary.

All numbers come from include.core.scoring; the HTML comes from include/report/templates/report.html, autoescaped (tags and
names are attacker-controllable), and CSV cells cannot start a spreadsheet formula.

Remediation (issue 18) is reported beside the day's verdicts, never in them: the "Remediated" section and the
JSON's `remediated` counts show what was fixed after the audit, and a fix that ran without making its checks pass
("not_fixed") is shown as a failure. The summary, compliance and CSV are what the audit saw.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from include.core.scoring import FleetSummary, HardeningSummary, fleet_summary, hardening_summary, judged_under
from include.core.status import CheckStatus, Status
from include.evidence.records import EvidenceItem
from include.remediation.records import FixRun, RemediationDecision, RemediationRecord, StepRun
from include.report.analysis import Drift, breakdown, drift
from include.report.between_runs import ChecksBetweenRuns
from include.report.rendering import pct, render

# Status order, "not verified" and colours live on include.core.status.Status; these are its views by name.
STATUS_ORDER = [s.value for s in Status.ordered()]
UNVERIFIED = [s.value for s in Status.ordered() if s.unverified]
COLOURS = Status.colours()
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
CSV_COLUMNS = ["instance_id", "name", "environment", "region", "account_id", "private_ip", "status",
               "failed_checks", "status_detail", "checked_at", "host_key_fingerprint", "output_sha256", "run_id",
               "profile", "advisory_failed", "transport", "requirements"]  # new columns go last: positions stay
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EMAIL_MAX_ROWS = 300  # per table in the email; the file report and the CSV always hold every row
EMAIL_DETAIL_CHARS = 300  # a remediation's detail in the email (the file report keeps it whole)
# RemediationRecord.outcome, in the report's order (what needs attention first); only "fixed" is a success.
REMEDIATION_OUTCOMES = ("not_fixed", "failed", "refused", "fixed")


@dataclass(frozen=True)
class Sealing:
    """The manifest a report is built from: the day's latest seal, as the day's run summary stores it."""

    manifest_sha256: str
    seal_seq: int
    previous_manifest_sha256: str = ""

    @classmethod
    def of(cls, summary) -> "Sealing | None":
        """From a RunSummary (include/evidence/records.py); None for a day never sealed."""
        if not summary or not summary.manifest_sha256:
            return None
        return cls(summary.manifest_sha256, summary.seal_seq, summary.previous_manifest_sha256)


@dataclass
class Report:
    summary: FleetSummary
    frame: pd.DataFrame
    html: str
    csv: str
    subject: str
    drift: Drift | None = None
    trend_png: bytes | None = None
    email_html: str = ""
    gaps: list[str] | None = None  # discovered running instances with no evidence for the day
    hardening: HardeningSummary | None = None  # CIS depth beside the audit-trail answer (never in the status)
    profiles: tuple[str, ...] = ()  # the profile(s) the day's statuses were judged under
    remediated: dict = field(default_factory=dict)  # remediation_counts(): the JSON's `remediated`
    seal: Sealing | None = None  # the day's latest seal as its run summary names it; None: not sealed
    not_found: list[str] | None = None  # a targeted run's ids not found running: the JSON's `requested_not_found`
    between_runs: ChecksBetweenRuns | None = None  # the day's event-driven checks (include/report/between_runs.py)


def _text(value) -> str:
    return "" if value is None else str(value)


def safe_cell(value) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a leading quote makes the cell plain text."""
    text = _text(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _requirements(check_ids, check_meta: Mapping[str, dict]) -> list[str]:
    """The framework requirements the given checks evidence (check_meta's "requirements"), once each, in order."""
    from include.checks.catalogue import requirement_order

    found = {req for cid in check_ids for req in check_meta.get(cid, {}).get("requirements", ())}
    return sorted(found, key=requirement_order)


def by_requirement(items: list[EvidenceItem], check_meta: Mapping[str, dict]) -> list[dict]:
    """Requirement → the hosts failing it: `deciding` when one of the host's failed_checks (the profile's) evidences
    it, else `advisory` when one of its advisory_failed does. Every requirement in check_meta is listed (0 too)."""
    from include.checks.catalogue import requirement_order

    rows: dict[str, dict] = {}
    for cid, meta in check_meta.items():
        for req in meta.get("requirements", ()):
            row = rows.setdefault(req, {"requirement": req, "checks": [], "deciding": set(), "advisory": set()})
            row["checks"].append(cid)
    for it in items:
        for req in _requirements(it.failed_checks, check_meta):
            rows[req]["deciding"].add(it.instance_id)
        for req in _requirements(it.advisory_failed, check_meta):
            rows[req]["advisory"].add(it.instance_id)
    out = []
    for req in sorted(rows, key=requirement_order):
        row = rows[req]
        deciding, advisory = sorted(row["deciding"]), sorted(row["advisory"] - row["deciding"])
        out.append({"requirement": req, "checks": row["checks"], "deciding": deciding, "advisory": advisory,
                    "failing": len(deciding) + len(advisory)})
    return out


def to_frame(items: list[EvidenceItem], check_meta: Mapping[str, dict] | None = None) -> pd.DataFrame:
    rows = []
    for it in items:
        rows.append({
            "instance_id": _text(it.instance_id),
            "name": _text(it.display_name),
            "environment": _text(it.display_environment),
            "region": _text(it.region),
            "account_id": _text(it.account_id),
            "private_ip": _text(it.private_ip),
            "status": _text(it.status),
            "failed_checks": ";".join(_text(c) for c in it.failed_checks or []),
            "status_detail": _text(it.status_detail),
            "checked_at": _text(it.checked_at),
            "host_key_fingerprint": _text(it.host_key_fingerprint),
            "output_sha256": _text(it.output_sha256),
            "run_id": _text(it.run_id),
            "profile": _text(it.profile),
            "advisory_failed": ";".join(_text(c) for c in it.advisory_failed or []),
            "transport": _text(it.transport),  # what reached the host (varies by host under transport=auto)
            # the requirements its failing checks (deciding and advisory) leave unmet
            "requirements": ";".join(_requirements([*it.failed_checks, *it.advisory_failed], check_meta or {})),
        })
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    frame["_rank"] = frame["status"].map(lambda s: rank.get(s, len(rank)))
    return frame.sort_values(["_rank", "instance_id"]).drop(columns="_rank").reset_index(drop=True)


def subject_line(audit_date: str, summary: FleetSummary, mode: str) -> str:
    prefix = "[rebuild] " if mode == "rebuild" else ""
    return f"{prefix}EC2 audit compliance {audit_date}: {pct(summary.compliance_pct)} ({summary.failing} failing)"


WAIVER_STATES = ("expired", "expiring_soon", "in_force")  # the report's order


def _failing(items: list[EvidenceItem], check_meta: Mapping[str, dict]) -> list[dict]:
    """NON_COMPLIANT hosts by id, each failed check (most severe first) with its detail and remediation."""
    rows = []
    for it in sorted(items, key=lambda i: _text(i.instance_id)):
        if it.status != Status.NON_COMPLIANT:
            continue
        failed = sorted(it.failed_checks or [],
                        key=lambda c: SEVERITY_RANK.get(check_meta.get(c, {}).get("severity", "low"), 9))
        checks = it.checks or {}
        rows.append({key: _text(getattr(it, key)) for key in ("instance_id", "name", "environment", "region")} | {
            "checks": [{"id": cid, "severity": check_meta.get(cid, {}).get("severity", "?"),
                        "detail": _text((checks.get(cid) or {}).get("detail", "")),
                        "remediation": check_meta.get(cid, {}).get("remediation", "")} for cid in failed]})
    return rows




def _cap(text: str, limit: int | None) -> str:
    return text if not limit or len(text) <= limit else text[:limit] + " …"


def still_failing(record: RemediationRecord) -> list[str]:
    """The checks the record's fixes addressed that the re-verify did not see pass (failing, or not evaluated);
    every check failing after, when the fixes name none or all of theirs passed."""
    addressed = list(dict.fromkeys(c for f in record.fixes for c in FixRun.from_item(f).check_ids))
    after = [*record.after_failed, *(c for c in record.after_advisory_failed if c not in record.after_failed)]
    still = [c for c in addressed if c in after
             or (record.after_checks and (record.after_checks.get(c) or {}).get("status") != CheckStatus.PASS)]
    return still or after


def _failure_detail(record: RemediationRecord) -> str:
    """Why it failed: the record's detail, else the first failed fix's, else the first step that exited non-zero."""
    if record.detail:
        return record.detail
    for fix in map(FixRun.from_item, record.fixes):
        if fix.result in ("failed", "refused") and fix.detail:
            return f"{fix.fix}: {fix.detail}"
        for step in map(StepRun.from_item, fix.steps):
            if step.exit_status not in (0, None):
                return f"{fix.fix}: {step.command} exited {step.exit_status}"
    return ""


def outcome_view(record: RemediationRecord, detail_chars: int | None = None) -> dict:
    """How a record's outcome reads (report and dashboard alike): `ok` only for "fixed"; a not_fixed reads
    "fix failed: <checks> still failing"; refused and failed carry their detail."""
    outcome = record.outcome
    if outcome == "fixed":
        return {"outcome": outcome, "ok": True, "label": "fixed", "detail": _cap(record.detail, detail_chars),
                "colour": Status.COMPLIANT.colour}
    failing = Status.NON_COMPLIANT.colour
    if outcome == "not_fixed":
        still = still_failing(record)
        label = f"fix failed: {', '.join(still)} still failing" if still else "fix failed: the checks still fail"
        return {"outcome": outcome, "ok": False, "label": label, "detail": _cap(record.detail, detail_chars),
                "colour": failing}
    detail = _cap(_failure_detail(record), detail_chars)
    if outcome == "refused":
        return {"outcome": outcome, "ok": False, "label": "refused (nothing was changed)", "detail": detail,
                "colour": Status.ERROR.colour}
    label = "failed" if outcome == "failed" else f"{outcome or 'no outcome'} (not confirmed fixed)"
    return {"outcome": outcome, "ok": False, "label": label, "detail": detail, "colour": failing}


def _fix_names(record: RemediationRecord) -> list[str]:
    """Each fix by name, with its result when it is not "ran" (refused, failed, skipped)."""
    return [fix.fix + ("" if fix.result in ("ran", "") else f" ({fix.result})")
            for fix in map(FixRun.from_item, record.fixes)]


def remediation_rows(records: Iterable[RemediationRecord], detail_chars: int | None = None) -> list[dict]:
    """One row per host for the "Remediated" section: failures first (REMEDIATION_OUTCOMES), then by host id."""
    rank = {o: i for i, o in enumerate(REMEDIATION_OUTCOMES)}
    ordered = sorted(records, key=lambda r: (rank.get(r.outcome, -1), r.host_id))
    return [{"host_id": r.host_id, "name": r.name, "audit_date": r.audit_date, "run_id": r.run_id,
             "fixes": _fix_names(r), "approved_by": r.approved_by, "approved_at": r.approved_at,
             "plan_sha256": r.plan_sha256, "before": r.before_status, "after": r.after_status,
             "before_failed": r.before_failed, "after_failed": r.after_failed,
             "outcome": outcome_view(r, detail_chars),
             "earlier": [{k: _text(e.get(k, "")) for k in ("run_id", "ran_at", "outcome", "approved_by")}
                         for e in r.earlier]} for r in ordered]


def decision_rows(decisions: Iterable[RemediationDecision], detail_chars: int | None = None) -> list[dict]:
    return [{"decision": d.decision, "by": d.by, "at": d.at, "plan_sha256": d.plan_sha256, "hosts": d.hosts,
             "fixes": d.fixes, "run_id": d.run_id, "detail": _cap(d.detail, detail_chars)}
            for d in decisions]


def remediation_counts(records: Iterable[RemediationRecord],
                       decisions: Iterable[RemediationDecision] = ()) -> dict:
    """The JSON's `remediated`: hosts, a count per outcome (every known one, 0 too; an unknown one as "other"),
    and a count per decision."""
    outcomes = [r.outcome for r in records]
    counts: dict = {"hosts": len(outcomes)} | {o: outcomes.count(o) for o in ("fixed", "not_fixed", "refused", "failed")}
    other = sum(o not in REMEDIATION_OUTCOMES for o in outcomes)
    if other:
        counts["other"] = other
    answered: dict[str, int] = {}
    for d in decisions:
        answered[d.decision] = answered.get(d.decision, 0) + 1
    counts["decisions"] = dict(sorted(answered.items()))
    return counts


def _breakdowns(frame: pd.DataFrame) -> list[tuple[str, list[list]]]:
    tables = []
    for by, label in (("environment", "Environment"), ("region", "Region"), ("account_id", "Account"),
                      ("transport", "Transport")):
        table = breakdown(frame, by)
        if len(table) < 1:
            continue
        tables.append((label, [[str(r[by]), int(r["checked"]), int(r["compliant"]), int(r["failing"]),
                                pct(None if pd.isna(r["compliance_pct"]) else r["compliance_pct"])]
                               for _, r in table.iterrows()]))
    return tables


def render_html(frame: pd.DataFrame, items: list[EvidenceItem], summary: FleetSummary, *, audit_date: str, run_id: str,
                mode: str, generated_at: datetime, check_meta: Mapping[str, dict], not_running: Mapping[str, int],
                notes: list[str], drift_: Drift | None = None, waivers: Mapping[str, list] | None = None,
                trend_src: str | None = None, gaps: list[str] | None = None, max_rows: int | None = None,
                hardening: HardeningSummary | None = None, profiles: tuple[str, ...] = (),
                remediations: Iterable[RemediationRecord] = (), decisions: Iterable[RemediationDecision] = (),
                seal: Sealing | None = None, between_runs: ChecksBetweenRuns | None = None) -> str:
    unverified = frame[frame["status"].isin(UNVERIFIED)]
    shown = frame if not max_rows or len(frame) <= max_rows else frame.iloc[0:0]
    requirements = by_requirement(items, check_meta)
    if max_rows:  # the email: only the requirements someone fails (the file report lists them all)
        requirements = [r for r in requirements if r["failing"]][:max_rows]
    detail_chars = EMAIL_DETAIL_CHARS if max_rows else None
    remediations, decisions = list(remediations), list(decisions)
    remediated, answers = remediation_rows(remediations, detail_chars), decision_rows(decisions, detail_chars)
    return render(
        "report.html", audit_date=audit_date, mode=mode, notes=notes, summary=summary, colours=COLOURS,
        colour=Status.COMPLIANT.colour if summary.compliance_pct == 100.0 else Status.NON_COMPLIANT.colour,
        profile=", ".join(profiles) or "audit-trail", hardening=hardening, check_meta=check_meta,
        hardened=pct(None if hardening is None else hardening.pct),
        badges=[(s, summary.counts[s]) for s in STATUS_ORDER if summary.counts.get(s)],
        not_running=[(k, int(v)) for k, v in sorted(not_running.items())], trend_src=trend_src, drift=drift_,
        names=dict(zip(frame["instance_id"], frame["name"])), failing=_failing(items, check_meta),
        max_rows=max_rows, gaps=gaps or [],
        unverified=[[r.instance_id, r.name, r.status, r.status_detail] for r in unverified.itertuples()],
        waivers=None if waivers is None else [(state, w.label(), w.justification) for state in WAIVER_STATES
                                              for w in waivers.get(state, [])],
        requirements=requirements, host_limit=10 if max_rows else 40, breakdowns=_breakdowns(frame), instances=list(shown.itertuples()), instances_total=len(frame),
        remediated=remediated, remediated_counts=remediation_counts(remediations, decisions), decisions=answers,
        between_runs=between_runs or ChecksBetweenRuns(),
        run_id=run_id, generated_at=generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        manifest_sha256=seal.manifest_sha256 if seal else "", seal_seq=seal.seal_seq if seal else 0)


def build_report(items: list[EvidenceItem], *, audit_date: str, discovered: int, run_id: str, mode: str,
                 generated_at: datetime, check_meta: Mapping[str, dict] | None = None,
                 not_running: Mapping[str, int] | None = None, notes: list[str] | None = None,
                 previous_items: list[EvidenceItem] | None = None, previous_day: str | None = None,
                 waivers: Mapping[str, list] | None = None, trend_png: bytes | None = None,
                 gaps: list[str] | None = None, remediations: Iterable[RemediationRecord] = (),
                 decisions: Iterable[RemediationDecision] = (), seal: Sealing | None = None,
                 not_found: list[str] | None = None, between_runs: ChecksBetweenRuns | None = None) -> Report:
    """`remediations` (RemediationStore.day_remediations) and `decisions` (RemediationStore.decisions) are reported
    in their own section and the JSON's `remediated`; they change no status, number or CSV row. `seal`: the
    manifest the day's run summary names (Sealing.of), shown in the HTML, the email and the JSON. `between_runs`:
    the day's event-driven checks (between_runs.checks_between_runs), their own section and the JSON's
    `checks_between_runs`; like remediation, they change no status, number or CSV row."""
    from include.verify.profiles import HARDENING_CHECKS

    remediations, decisions = list(remediations), list(decisions)

    summary = fleet_summary([_text(it.status) for it in items], discovered)
    hardening = hardening_summary(items, HARDENING_CHECKS)
    profiles = judged_under(items)
    frame = to_frame(items, check_meta)
    csv_text = frame.map(safe_cell).to_csv(index=False)
    changes = drift(items, previous_items or [], previous_day)
    def page(trend_src: str | None, max_rows: int | None = None) -> str:
        return render_html(frame, items, summary, audit_date=audit_date, run_id=run_id, mode=mode,
                           generated_at=generated_at, check_meta=check_meta or {}, not_running=not_running or {},
                           notes=notes or [], drift_=changes, waivers=waivers, trend_src=trend_src, gaps=gaps,
                           max_rows=max_rows, hardening=hardening, profiles=profiles,
                           remediations=remediations, decisions=decisions, seal=seal, between_runs=between_runs)

    inline = f"data:image/png;base64,{base64.b64encode(trend_png).decode()}" if trend_png else None
    return Report(summary, frame, page(inline), csv_text, subject_line(audit_date, summary, mode), changes,
                  trend_png, page(f"cid:{trend_name(audit_date)}" if trend_png else None, EMAIL_MAX_ROWS),
                  list(gaps or []), hardening, profiles, remediation_counts(remediations, decisions), seal,
                  list(not_found or []), between_runs)


def trend_name(audit_date: str) -> str:
    return f"compliance-{audit_date}-trend.png"


def write_report(report: Report, report_dir: str | Path, audit_date: str, *, run_id: str = "", mode: str = "") -> dict[str, str]:
    """The day's files in `report_dir` (a local folder, or `s3://bucket/prefix` through ObjectStoragePath:
    include/report/storage.py); returns kind → path or URL, what `send_report` reads back on any worker."""
    from include.report import storage as report_store

    directory = str(report_dir)
    report_store.prepare(directory)
    paths = {kind: report_store.join(directory, f"compliance-{audit_date}.{kind}") for kind in ("html", "csv", "json")}
    s = report.summary
    machine = {"audit_date": audit_date, "run_id": run_id, "mode": mode, "discovered": s.discovered,
               "checked": s.checked, "counts": s.counts, "compliance_pct": s.compliance_pct,
               "coverage_pct": s.coverage_pct, "subject": report.subject}
    machine["coverage_gaps"] = report.gaps or []
    if report.not_found:  # a targeted run asked for these and found them not running (the HTML's notes say so)
        machine["requested_not_found"] = list(report.not_found)
    machine["profiles"] = list(report.profiles)
    machine["transports"] = {str(k): int(v) for k, v in report.frame["transport"].replace("", "(none)")
                             .value_counts().sort_index().items()}  # hosts per transport
    if report.hardening is not None:
        h = report.hardening
        machine["hardening"] = {"pct": h.pct, "assessed": h.assessed, "hardened": h.hardened, "gaps": h.gaps}
    machine["remediated"] = report.remediated or remediation_counts(())  # beside the counts above, never in them
    # The manifest the report was built from ("" and 0: the day is not sealed).
    seal = report.seal or Sealing("", 0)
    machine["manifest_sha256"], machine["seal_seq"] = seal.manifest_sha256, seal.seal_seq
    machine["previous_manifest_sha256"] = seal.previous_manifest_sha256
    checks = report.between_runs or ChecksBetweenRuns()
    machine["checks_between_runs"] = {"total": checks.total, "by_trigger": checks.by_trigger,
                                      "listed": len(checks.rows), "rows": [r.to_json() for r in checks.rows]}
    if report.drift is not None:
        d = report.drift
        machine["drift"] = {"previous_day": d.previous_day, "newly_failing": d.newly_failing, "fixed": d.fixed,
                            "new": len(d.new), "vanished": d.vanished}
    report_store.put(paths["html"], report.html.encode("utf-8"))
    report_store.put(paths["csv"], report.csv.encode("utf-8"))
    report_store.put(paths["json"], (json.dumps(machine, indent=2) + "\n").encode("utf-8"))
    result = dict(paths)
    if report.trend_png:
        result["trend_png"] = report_store.join(directory, trend_name(audit_date))
        report_store.put(result["trend_png"], report.trend_png)
    if report.email_html:  # what send_report mails (chart by cid:)
        result["email_html"] = report_store.join(directory, f"compliance-{audit_date}.email.html")
        report_store.put(result["email_html"], report.email_html.encode("utf-8"))
    return result
