"""The compliance dashboard's pages (served by plugins/ec2_audit_dashboard.py inside the Airflow UI).

Pure rendering from evidence already read: fleet compliance over time, one day's failing hosts with their
failed checks and remediation, and one host's history. Relative links only, so the pages work under any
URL prefix and inside the Airflow UI's iframe. Everything from evidence is escaped: tags are user data.
"""
from __future__ import annotations

import base64
from html import escape

from include.report import COLOURS

PAGE = ('<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>'
        '<body style="font-family:Arial,Helvetica,sans-serif;font-size:14px;color:#1f2328;margin:16px 24px">'
        "{body}</body></html>")
CELL = "border-bottom:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f'<th style="{CELL};background:#f6f8fa">{escape(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{CELL}">{c}</td>' for c in row) + "</tr>" for row in rows)
    return f'<table style="border-collapse:collapse;margin:8px 0 20px">{head and f"<tr>{head}</tr>"}{body}</table>'


def _status(status: str) -> str:
    return (f'<span style="padding:2px 7px;border-radius:9px;color:#fff;font-size:12px;'
            f'background:{COLOURS.get(status, "#57606a")}">{escape(status)}</span>')


def fleet_page(day: str | None, summary: dict | None, items: list[dict], trend_png: bytes | None,
               check_meta: dict[str, dict]) -> str:
    if day is None:
        body = "<h1>EC2 audit compliance</h1><p>No audit has been stored yet: run the DAG once.</p>"
        return PAGE.format(title="EC2 audit compliance", body=body)
    summary = summary or {}
    pct = summary.get("compliance_pct")
    headline = (f"<p style='font-size:18px'><b>{escape(str(pct if pct is not None else 'n/a'))}%</b> compliant on "
                f"{escape(day)} · {escape(str(summary.get('checked', len(items))))} checked of "
                f"{escape(str(summary.get('discovered', '?')))} discovered</p>")
    chart = (f'<img alt="compliance trend" style="max-width:100%" '
             f'src="data:image/png;base64,{base64.b64encode(trend_png).decode()}">' if trend_png else "")
    failing = sorted((it for it in items if it.get("status") == "NON_COMPLIANT"),
                     key=lambda it: (-len(it.get("failed_checks") or []), it["instance_id"]))
    rows = []
    for it in failing:
        checks = "<br>".join(
            f"<b>{escape(c)}</b> ({escape(check_meta.get(c, {}).get('severity', '?'))}): "
            f"{escape(check_meta.get(c, {}).get('remediation', ''))}" for c in it.get("failed_checks") or [])
        name = str((it.get("tags") or {}).get("Name", ""))
        rows.append([f'<a href="host/{escape(it["instance_id"])}">{escape(it["instance_id"])}</a>', escape(name),
                     escape(str(it.get("region", ""))), checks])
    other = sorted((it for it in items if it.get("status") not in ("COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE",
                                                                    "WAIVED")), key=lambda it: it["instance_id"])
    unverified = [[f'<a href="host/{escape(it["instance_id"])}">{escape(it["instance_id"])}</a>',
                   escape(str((it.get("tags") or {}).get("Name", ""))), _status(it["status"]),
                   escape(str(it.get("status_detail", ""))[:200])] for it in other]
    body = (f"<h1>EC2 audit compliance</h1>{headline}{chart}"
            f"<h2>Failing hosts ({len(failing)})</h2>"
            + (_table(["Instance", "Name", "Region", "Failed checks and remediation"], rows) if rows else "<p>None.</p>")
            + f"<h2>Not verified ({len(other)})</h2>"
            + (_table(["Instance", "Name", "Status", "Why"], unverified) if unverified else "<p>None.</p>"))
    return PAGE.format(title=f"EC2 audit compliance {escape(day)}", body=body)


def host_page(instance_id: str, history: list[dict]) -> str:
    if not history:
        body = f'<p><a href="../">← fleet</a></p><h1>{escape(instance_id)}</h1><p>No evidence stored for this instance.</p>'
        return PAGE.format(title=escape(instance_id), body=body)
    latest = history[0]
    name = str((latest.get("tags") or {}).get("Name", ""))
    rows = [[escape(it["audit_date"]), _status(str(it.get("status", ""))),
             escape(", ".join(it.get("failed_checks") or [])), escape(str(it.get("checked_at", ""))),
             f'<code style="font-size:11px">{escape(str(it.get("output_sha256", ""))[:16])}</code>',
             escape(str(it.get("run_id", "")))] for it in history]
    body = (f'<p><a href="../">← fleet</a></p><h1>{escape(instance_id)} {escape(name)}</h1>'
            f"<p>{escape(str(latest.get('region', '')))} · account {escape(str(latest.get('account_id', '')))} · "
            f"host key {escape(str(latest.get('host_key_fingerprint', '')))}</p>"
            + _table(["Day", "Status", "Failed checks", "Checked at", "Output sha256", "Run"], rows))
    return PAGE.format(title=f"{escape(instance_id)} history", body=body)
