"""The day's evidence and report as Airflow Assets: downstream DAGs (remediation, a SIEM export) schedule on
them instead of on a clock, and read which audit day (and where its files are) from the asset event's extra.

The URIs name what they stand for, not where it lives: one evidence table and one report folder per
deployment (params can move them; the event's extra says where this run put them).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset

if TYPE_CHECKING:
    from include.evidence.sealed import Sealed
    from include.report.built import Built

EVIDENCE = Asset(name="ec2_audit_evidence", uri="ec2-audit://evidence", group="ec2-audit")
REPORT = Asset(name="ec2_audit_report", uri="ec2-audit://report", group="ec2-audit")


def evidence_extra(table: str, sealed: Sealed) -> dict[str, Any]:
    """What a consumer of the evidence needs: the day, the table, the run, how many hosts were checked (None
    for a rebuild, which seals nothing)."""
    return {"audit_date": sealed.audit_date, "evidence_table": table, "run_id": sealed.run_id,
            "mode": sealed.mode, "checked": sealed.checked, "discovered": sealed.discovered}


def report_extra(built: Built) -> dict[str, Any]:
    """The day and where its report files are (paths or s3:// URLs)."""
    return {"audit_date": built.audit_date, "run_id": built.run_id,
            "compliance_pct": built.compliance_pct, "paths": dict(built.paths)}
