"""The daily report: pandas frame → HTML for mail clients, formula-safe CSV, JSON summary.

All numbers come from include.scoring; everything taken from evidence is HTML-escaped (tags and names are
attacker-controllable) and CSV cells cannot start a spreadsheet formula.
"""
from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from include.analysis import Drift, breakdown, drift
from include.scoring import FleetSummary, HardeningSummary, fleet_summary, hardening_summary

STATUS_ORDER = ["NON_COMPLIANT", "HOST_KEY_MISMATCH", "AUTH_FAILED", "ERROR", "UNREACHABLE", "WAIVED",
                "NOT_APPLICABLE", "COMPLIANT"]
UNVERIFIED = ["HOST_KEY_MISMATCH", "AUTH_FAILED", "ERROR", "UNREACHABLE"]
COLOURS = {"COMPLIANT": "#1a7f37", "NON_COMPLIANT": "#cf222e", "ERROR": "#9a6700", "UNREACHABLE": "#6e7781",
           "AUTH_FAILED": "#8250df", "HOST_KEY_MISMATCH": "#bc4c00", "NOT_APPLICABLE": "#57606a", "WAIVED": "#0969da"}
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
CSV_COLUMNS = ["instance_id", "name", "environment", "region", "account_id", "private_ip", "status",
               "failed_checks", "status_detail", "checked_at", "host_key_fingerprint", "output_sha256", "run_id",
               "profile", "advisory_failed"]
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
EMAIL_MAX_ROWS = 300  # per table in the email; the file report and the CSV always hold every row

CELL = "padding:4px 8px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top;font-size:13px"
HEAD = CELL + ";background:#f6f8fa;font-weight:600"


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


def to_frame(items: list[dict]) -> pd.DataFrame:
    rows = []
    for it in items:
        rows.append({
            "instance_id": _text(it.get("instance_id")),
            "name": _text(it.get("name") or (it.get("tags") or {}).get("Name")),
            "environment": _text(it.get("environment") or (it.get("tags") or {}).get("Environment")),
            "region": _text(it.get("region")),
            "account_id": _text(it.get("account_id")),
            "private_ip": _text(it.get("private_ip")),
            "status": _text(it.get("status")),
            "failed_checks": ";".join(_text(c) for c in it.get("failed_checks") or []),
            "status_detail": _text(it.get("status_detail")),
            "checked_at": _text(it.get("checked_at")),
            "host_key_fingerprint": _text(it.get("host_key_fingerprint")),
            "output_sha256": _text(it.get("output_sha256")),
            "run_id": _text(it.get("run_id")),
            "profile": _text(it.get("profile")),
            "advisory_failed": ";".join(_text(c) for c in it.get("advisory_failed") or []),
        })
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    frame["_rank"] = frame["status"].map(lambda s: rank.get(s, len(rank)))
    return frame.sort_values(["_rank", "instance_id"]).drop(columns="_rank").reset_index(drop=True)


def subject_line(audit_date: str, summary: FleetSummary, mode: str) -> str:
    pct = "n/a" if summary.compliance_pct is None else f"{summary.compliance_pct:.1f}%"
    prefix = "[rebuild] " if mode == "rebuild" else ""
    return f"{prefix}EC2 audit compliance {audit_date}: {pct} ({summary.failing} failing)"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    """Rows are already-escaped HTML fragments."""
    head = "".join(f'<th style="{HEAD}">{html.escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{CELL}">{c}</td>' for c in row) + "</tr>" for row in rows)
    return (f'<table cellspacing="0" cellpadding="0" style="border-collapse:collapse;width:100%;margin:8px 0 20px">'
            f"<tr>{head}</tr>{body}</table>")


def _badge(status: str, count: int) -> str:
    colour = COLOURS.get(status, "#57606a")
    return (f'<span style="display:inline-block;margin:2px 6px 2px 0;padding:3px 8px;border-radius:10px;'
            f'background:{colour};color:#fff;font-size:12px">{html.escape(status)}: {count}</span>')


def _failing_rows(items: list[dict], check_meta: Mapping[str, dict]) -> list[list[str]]:
    rows = []
    for it in sorted(items, key=lambda i: _text(i.get("instance_id"))):
        if it.get("status") != "NON_COMPLIANT":
            continue
        failed = sorted(it.get("failed_checks") or [],
                        key=lambda c: SEVERITY_RANK.get(check_meta.get(c, {}).get("severity", "low"), 9))
        checks = it.get("checks") or {}
        lines, fixes = [], []
        for cid in failed:
            meta = check_meta.get(cid, {})
            detail = (checks.get(cid) or {}).get("detail", "")
            lines.append(f"<b>{html.escape(cid)}</b> ({html.escape(meta.get('severity', '?'))}): {html.escape(_text(detail))}")
            if meta.get("remediation"):
                fixes.append(f"{html.escape(cid)}: {html.escape(meta['remediation'])}")
        rows.append([html.escape(_text(it.get("instance_id"))), html.escape(_text(it.get("name"))),
                     html.escape(_text(it.get("environment"))), html.escape(_text(it.get("region"))),
                     "<br>".join(lines), "<br>".join(fixes)])
    return rows


def _names(frame: pd.DataFrame, ids: list[str], limit: int = 40) -> str:
    names = dict(zip(frame["instance_id"], frame["name"]))
    shown = [f"{html.escape(i)} ({html.escape(names[i])})" if names.get(i) else html.escape(i) for i in ids[:limit]]
    return ", ".join(shown) + (f" … and {len(ids) - limit} more" if len(ids) > limit else "") if ids else "none"


def _drift_html(d: Drift, frame: pd.DataFrame) -> str:
    if not d.has_baseline:
        return '<p style="font-size:13px">No earlier audit day on record: nothing to compare with.</p>'
    rows = [["<b>newly failing</b>", str(len(d.newly_failing)), _names(frame, d.newly_failing)],
            ["fixed", str(len(d.fixed)), _names(frame, d.fixed)],
            ["new hosts", str(len(d.new)), _names(frame, d.new)],
            ["vanished hosts", str(len(d.vanished)), ", ".join(html.escape(i) for i in d.vanished[:40]) or "none"]]
    return _table(["since " + d.previous_day, "hosts", "which"], rows)


def _more(n: int) -> str:
    return f'<p style="font-size:13px">… {n} more rows in the attached CSV (kept out of the email to keep it small).</p>'


def _breakdown_html(frame: pd.DataFrame) -> str:
    parts = []
    for by, label in (("environment", "Environment"), ("region", "Region"), ("account_id", "Account")):
        table = breakdown(frame, by)
        if len(table) < 1:
            continue
        rows = [[html.escape(str(r[by])), str(int(r["checked"])), str(int(r["compliant"])), str(int(r["failing"])),
                 "n/a" if pd.isna(r["compliance_pct"]) else f"{r['compliance_pct']:.1f}%"] for _, r in table.iterrows()]
        parts.append(_table([label, "checked", "compliant", "failing", "compliance"], rows))
    return "".join(parts)


def _waivers_html(waivers: Mapping[str, list]) -> str:
    rows = []
    for state, label in (("expired", "<b>expired</b> (no longer applies)"), ("expiring_soon", "expiring within 14 days"),
                         ("in_force", "in force")):
        for w in waivers.get(state, []):
            rows.append([label, html.escape(w.label()), html.escape(w.justification)])
    return _table(["state", "waiver", "justification"], rows) if rows else '<p style="font-size:13px">None.</p>'


def _hardening_html(h: HardeningSummary, check_meta: Mapping[str, dict]) -> str:
    if not h.assessed:
        return '<p style="font-size:13px">No host had every hardening check evaluated.</p>'
    rows = [[f"<b>{html.escape(cid)}</b> ({html.escape(check_meta.get(cid, {}).get('severity', '?'))})",
             f"{n} of {h.assessed}", html.escape(check_meta.get(cid, {}).get("remediation", ""))]
            for cid, n in h.gaps.items()]
    intro = (f'<p style="font-size:13px">{h.hardened} of {h.assessed} hosts meet every CIS hardening check. These '
             "are advisory under the audit-trail profile: they are stored and shown, and decide the status only "
             "under <code>profile=cis</code>.</p>")
    return intro + (_table(["hardening check", "hosts failing", "remediation"], rows) if rows else "")


def render_html(frame: pd.DataFrame, items: list[dict], summary: FleetSummary, *, audit_date: str, run_id: str,
                mode: str, generated_at: datetime, check_meta: Mapping[str, dict], not_running: Mapping[str, int],
                notes: list[str], drift_: Drift | None = None, waivers: Mapping[str, list] | None = None,
                trend_src: str | None = None, gaps: list[str] | None = None, max_rows: int | None = None,
                hardening: HardeningSummary | None = None, profiles: tuple[str, ...] = ()) -> str:
    pct = "n/a" if summary.compliance_pct is None else f"{summary.compliance_pct:.1f}%"
    coverage = "n/a" if summary.coverage_pct is None else f"{summary.coverage_pct:.1f}%"
    parts = ['<div style="font-family:Arial,Helvetica,sans-serif;color:#1f2328;max-width:1100px">',
             f'<h1 style="font-size:22px;margin:0 0 4px">EC2 audit compliance — {html.escape(audit_date)}</h1>']
    if mode == "rebuild":
        parts.append('<p style="background:#fff8c5;border:1px solid #d4a72c;padding:8px;font-size:14px">'
                     "<b>Rebuilt from stored evidence.</b> No host was contacted for this report.</p>")
    for note in notes:
        parts.append(f'<p style="background:#f6f8fa;border-left:4px solid #0969da;padding:6px 8px;font-size:13px">'
                     f"{html.escape(note)}</p>")
    colour = COLOURS["COMPLIANT"] if summary.compliance_pct == 100.0 else COLOURS["NON_COMPLIANT"]
    profile = ", ".join(profiles) or "audit-trail"
    hardened = "n/a" if hardening is None or hardening.pct is None else f"{hardening.pct:.1f}%"
    parts.append(f'<p style="font-size:15px;margin:8px 0"><span style="font-size:28px;font-weight:700;color:{colour}">'
                 f"{pct}</span> compliant (profile {html.escape(profile)}) · "
                 f'<span style="font-size:20px;font-weight:700">{hardened}</span> hardened (CIS) · coverage {coverage} '
                 f"(checked {summary.checked} of {summary.discovered} discovered running instances)</p>")
    parts.append("<p>" + "".join(_badge(s, summary.counts.get(s, 0)) for s in STATUS_ORDER if summary.counts.get(s))
                 + "</p>")
    if not_running:
        text = ", ".join(f"{html.escape(k)}: {int(v)}" for k, v in sorted(not_running.items()))
        parts.append(f'<p style="font-size:13px;color:#57606a">Not checked (not running): {text}</p>')

    if trend_src:
        parts.append(f'<img src="{trend_src}" alt="compliance over the last 30 audit days" width="800" '
                     'style="max-width:100%;height:auto;display:block;margin:8px 0">')
    if drift_ is not None:
        parts.append('<h2 style="font-size:17px;margin:16px 0 0">What changed</h2>' + _drift_html(drift_, frame))
    failing = _failing_rows(items, check_meta)
    parts.append(f'<h2 style="font-size:17px;margin:16px 0 0">Failing hosts ({len(failing)})</h2>')
    parts.append(_table(["instance", "name", "environment", "region", "failed checks", "remediation"],
                        failing[:max_rows] if max_rows else failing) if failing else '<p style="font-size:13px">None.</p>')
    if max_rows and len(failing) > max_rows:
        parts.append(_more(len(failing) - max_rows))

    if hardening is not None:
        parts.append(f'<h2 style="font-size:17px;margin:16px 0 0">Hardening (CIS): {hardened}</h2>'
                     + _hardening_html(hardening, check_meta))

    if gaps:
        parts.append(f'<h2 style="font-size:17px;margin:16px 0 0">Coverage gaps ({len(gaps)})</h2>'
                     '<p style="font-size:13px">Running when discovered, but no evidence was stored for this day: '
                     f'{", ".join(html.escape(g) for g in gaps[:100])}{" …" if len(gaps) > 100 else ""}</p>')
    unverified = frame[frame["status"].isin(UNVERIFIED)]
    parts.append(f'<h2 style="font-size:17px;margin:16px 0 0">Could not be verified ({len(unverified)})</h2>')
    if len(unverified):
        rows = [[html.escape(r.instance_id), html.escape(r.name), html.escape(r.status), html.escape(r.status_detail)]
                for r in unverified.itertuples()]
        parts.append(_table(["instance", "name", "status", "why"], rows))
    else:
        parts.append('<p style="font-size:13px">None.</p>')

    if waivers is not None:
        parts.append('<h2 style="font-size:17px;margin:16px 0 0">Waivers</h2>' + _waivers_html(waivers))
    parts.append('<h2 style="font-size:17px;margin:16px 0 0">Compliance by environment, region and account</h2>'
                 + _breakdown_html(frame))
    parts.append(f'<h2 style="font-size:17px;margin:16px 0 0">All instances ({len(frame)})</h2>')
    shown = frame if not max_rows or len(frame) <= max_rows else frame.iloc[0:0]
    if len(shown) < len(frame):
        parts.append(_more(len(frame)))
    rows = [[html.escape(r.instance_id), html.escape(r.name), html.escape(r.environment), html.escape(r.region),
             html.escape(r.private_ip),
             f'<span style="color:{COLOURS.get(r.status, "#1f2328")};font-weight:600">{html.escape(r.status)}</span>',
             html.escape(r.failed_checks.replace(";", ", "))] for r in shown.itertuples()]
    parts.append(_table(["instance", "name", "environment", "region", "private IP", "status", "failed checks"], rows))
    parts.append(f'<p style="font-size:11px;color:#57606a">Run {html.escape(run_id)} · mode {html.escape(mode)} · '
                 f"generated {html.escape(generated_at.strftime('%Y-%m-%d %H:%M:%S UTC'))} · compliance % = "
                 "COMPLIANT / (checked − NOT_APPLICABLE − WAIVED); coverage = checked / discovered.</p></div>")
    return ("<!DOCTYPE html><html><head><meta charset=\"utf-8\">"
            f"<title>EC2 audit compliance {html.escape(audit_date)}</title></head><body>"
            + "".join(parts) + "</body></html>")


def build_report(items: list[dict], *, audit_date: str, discovered: int, run_id: str, mode: str,
                 generated_at: datetime, check_meta: Mapping[str, dict] | None = None,
                 not_running: Mapping[str, int] | None = None, notes: list[str] | None = None,
                 previous_items: list[dict] | None = None, previous_day: str | None = None,
                 waivers: Mapping[str, list] | None = None, trend_png: bytes | None = None,
                 gaps: list[str] | None = None) -> Report:
    from include.profiles import HARDENING_CHECKS

    summary = fleet_summary([_text(it.get("status")) for it in items], discovered)
    hardening = hardening_summary(items, HARDENING_CHECKS)
    profiles = tuple(sorted({_text(it.get("profile")) for it in items if it.get("profile")}))
    frame = to_frame(items)
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
