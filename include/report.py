"""The daily report: pandas frame → HTML for mail clients, formula-safe CSV, JSON summary.

All numbers come from include.scoring; the HTML comes from include/templates/report.html, autoescaped (tags and
names are attacker-controllable), and CSV cells cannot start a spreadsheet formula.
"""
from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from include.analysis import Drift, breakdown, drift
from include.models import Status
from include.records import EvidenceItem
from include.rendering import pct, render
from include.scoring import FleetSummary, HardeningSummary, fleet_summary, hardening_summary, judged_under

# Status order, "not verified" and colours live on include.models.Status; these are its views by name.
STATUS_ORDER = [s.value for s in Status.ordered()]
UNVERIFIED = [s.value for s in Status.ordered() if s.unverified]
COLOURS = Status.colours()
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
CSV_COLUMNS = ["instance_id", "name", "environment", "region", "account_id", "private_ip", "status",
               "failed_checks", "status_detail", "checked_at", "host_key_fingerprint", "output_sha256", "run_id",
               "profile", "advisory_failed", "transport", "requirements"]  # new columns go last: positions stay
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EMAIL_MAX_ROWS = 300  # per table in the email; the file report and the CSV always hold every row



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


def by_requirement(items: list[dict], check_meta: Mapping[str, dict]) -> list[dict]:
    """Requirement → the hosts failing it: `deciding` when one of the host's failed_checks (the profile's) evidences
    it, else `advisory` when one of its advisory_failed does. Every requirement in check_meta is listed (0 too)."""
    from include.checks.catalogue import requirement_order

    rows: dict[str, dict] = {}
    for cid, meta in check_meta.items():
        for req in meta.get("requirements", ()):
            row = rows.setdefault(req, {"requirement": req, "checks": [], "deciding": set(), "advisory": set()})
            row["checks"].append(cid)
    for it in map(EvidenceItem.from_item, items):
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


def to_frame(items: list[dict], check_meta: Mapping[str, dict] | None = None) -> pd.DataFrame:
    rows = []
    for it in map(EvidenceItem.from_item, items):
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


def _failing(items: list[dict], check_meta: Mapping[str, dict]) -> list[dict]:
    """NON_COMPLIANT hosts by id, each failed check (most severe first) with its detail and remediation."""
    rows = []
    for it in sorted(items, key=lambda i: _text(i.get("instance_id"))):
        if it.get("status") != Status.NON_COMPLIANT:
            continue
        failed = sorted(it.get("failed_checks") or [],
                        key=lambda c: SEVERITY_RANK.get(check_meta.get(c, {}).get("severity", "low"), 9))
        checks = it.get("checks") or {}
        rows.append({key: _text(it.get(key)) for key in ("instance_id", "name", "environment", "region")} | {
            "checks": [{"id": cid, "severity": check_meta.get(cid, {}).get("severity", "?"),
                        "detail": _text((checks.get(cid) or {}).get("detail", "")),
                        "remediation": check_meta.get(cid, {}).get("remediation", "")} for cid in failed]})
    return rows


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


def render_html(frame: pd.DataFrame, items: list[dict], summary: FleetSummary, *, audit_date: str, run_id: str,
                mode: str, generated_at: datetime, check_meta: Mapping[str, dict], not_running: Mapping[str, int],
                notes: list[str], drift_: Drift | None = None, waivers: Mapping[str, list] | None = None,
                trend_src: str | None = None, gaps: list[str] | None = None, max_rows: int | None = None,
                hardening: HardeningSummary | None = None, profiles: tuple[str, ...] = ()) -> str:
    unverified = frame[frame["status"].isin(UNVERIFIED)]
    shown = frame if not max_rows or len(frame) <= max_rows else frame.iloc[0:0]
    requirements = by_requirement(items, check_meta)
    if max_rows:  # the email: only the requirements someone fails (the file report lists them all)
        requirements = [r for r in requirements if r["failing"]][:max_rows]
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
        run_id=run_id, generated_at=generated_at.strftime("%Y-%m-%d %H:%M:%S UTC"))


def build_report(items: list[dict], *, audit_date: str, discovered: int, run_id: str, mode: str,
                 generated_at: datetime, check_meta: Mapping[str, dict] | None = None,
                 not_running: Mapping[str, int] | None = None, notes: list[str] | None = None,
                 previous_items: list[dict] | None = None, previous_day: str | None = None,
                 waivers: Mapping[str, list] | None = None, trend_png: bytes | None = None,
                 gaps: list[str] | None = None) -> Report:
    from include.profiles import HARDENING_CHECKS

    summary = fleet_summary([_text(it.get("status")) for it in items], discovered)
    hardening = hardening_summary(items, HARDENING_CHECKS)
    profiles = judged_under(items)
    frame = to_frame(items, check_meta)
    csv_text = frame.map(safe_cell).to_csv(index=False)
    changes = drift(items, previous_items or [], previous_day)
    def page(trend_src: str | None, max_rows: int | None = None) -> str:
        return render_html(frame, items, summary, audit_date=audit_date, run_id=run_id, mode=mode,
                           generated_at=generated_at, check_meta=check_meta or {}, not_running=not_running or {},
                           notes=notes or [], drift_=changes, waivers=waivers, trend_src=trend_src, gaps=gaps,
                           max_rows=max_rows, hardening=hardening, profiles=profiles)

    inline = f"data:image/png;base64,{base64.b64encode(trend_png).decode()}" if trend_png else None
    return Report(summary, frame, page(inline), csv_text, subject_line(audit_date, summary, mode), changes,
                  trend_png, page(f"cid:{trend_name(audit_date)}" if trend_png else None, EMAIL_MAX_ROWS),
                  list(gaps or []), hardening, profiles)


def trend_name(audit_date: str) -> str:
    return f"compliance-{audit_date}-trend.png"


def write_report(report: Report, report_dir: str | Path, audit_date: str, *, run_id: str = "", mode: str = "") -> dict[str, str]:
    """The day's files in `report_dir` (a local folder, or `s3://bucket/prefix` through ObjectStoragePath:
    include/report_store.py); returns kind → path or URL, what `send_report` reads back on any worker."""
    from include import report_store

    directory = str(report_dir)
    report_store.prepare(directory)
    paths = {kind: report_store.join(directory, f"compliance-{audit_date}.{kind}") for kind in ("html", "csv", "json")}
    s = report.summary
    machine = {"audit_date": audit_date, "run_id": run_id, "mode": mode, "discovered": s.discovered,
               "checked": s.checked, "counts": s.counts, "compliance_pct": s.compliance_pct,
               "coverage_pct": s.coverage_pct, "subject": report.subject}
    machine["coverage_gaps"] = report.gaps or []
    machine["profiles"] = list(report.profiles)
    machine["transports"] = {str(k): int(v) for k, v in report.frame["transport"].replace("", "(none)")
                             .value_counts().sort_index().items()}  # hosts per transport
    if report.hardening is not None:
        h = report.hardening
        machine["hardening"] = {"pct": h.pct, "assessed": h.assessed, "hardened": h.hardened, "gaps": h.gaps}
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
