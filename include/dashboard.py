"""The compliance dashboard's pages (served by plugins/ec2_audit_dashboard.py inside the Airflow UI).

Pure rendering from evidence already read: fleet compliance over time, one day's audit-trail compliance beside
the CIS hardening score and its gaps, the failing hosts with their failed checks and remediation, and one
host's history. Relative links only, so the pages work under any URL prefix and inside the Airflow UI's
iframe. The HTML comes from include/templates/dashboard_*.html, autoescaped: tags are user data.
"""
from __future__ import annotations

import base64

from include.profiles import HARDENING_CHECKS
from include.rendering import render
from include.report import COLOURS, judged_under
from include.scoring import hardening_summary

SETTLED = ("COMPLIANT", "NON_COMPLIANT", "NOT_APPLICABLE", "WAIVED")  # anything else was not verified


def _name(item: dict) -> str:
    return str((item.get("tags") or {}).get("Name", ""))


def fleet_page(day: str | None, summary: dict | None, items: list[dict], trend_png: bytes | None,
               check_meta: dict[str, dict]) -> str:
    if day is None:
        return render("dashboard_fleet.html", day=None)
    summary = summary or {}
    failing = sorted((it for it in items if it.get("status") == "NON_COMPLIANT"),
                     key=lambda it: (-len(it.get("failed_checks") or []), it["instance_id"]))
    other = sorted((it for it in items if it.get("status") not in SETTLED), key=lambda it: it["instance_id"])
    return render(
        "dashboard_fleet.html", day=day, compliance_pct=summary.get("compliance_pct"),
        checked=summary.get("checked", len(items)), discovered=summary.get("discovered", "?"),
        profile=", ".join(judged_under(items)) or "audit-trail",
        hardening=hardening_summary(items, HARDENING_CHECKS), check_meta=check_meta, colours=COLOURS,
        trend_src=f"data:image/png;base64,{base64.b64encode(trend_png).decode()}" if trend_png else None,
        failing=[{"instance_id": it["instance_id"], "name": _name(it), "region": str(it.get("region", "")),
                  "checks": [{"id": c, "severity": check_meta.get(c, {}).get("severity", "?"),
                              "remediation": check_meta.get(c, {}).get("remediation", "")}
                             for c in it.get("failed_checks") or []]} for it in failing],
        unverified=[{"instance_id": it["instance_id"], "name": _name(it), "status": it["status"],
                     "detail": str(it.get("status_detail", ""))[:200]} for it in other])


def host_page(instance_id: str, history: list[dict]) -> str:
    latest = history[0] if history else {}
    rows = [{"day": it["audit_date"], "status": str(it.get("status", "")),
             "failed": ", ".join(it.get("failed_checks") or []),
             "advisory": ", ".join(it.get("advisory_failed") or []), "checked_at": str(it.get("checked_at", "")),
             "sha": str(it.get("output_sha256", ""))[:16], "run": str(it.get("run_id", ""))} for it in history]
    return render("dashboard_host.html", instance_id=instance_id, history=rows, name=_name(latest),
                  region=str(latest.get("region", "")), account_id=str(latest.get("account_id", "")),
                  host_key=str(latest.get("host_key_fingerprint", "")), colours=COLOURS)
