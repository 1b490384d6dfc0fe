"""The day's report must be out in time: an Airflow DeadlineAlert on the DAG run, and what it sends.

The deadline counts from when the run was queued (DAGRUN_QUEUED_AT): for the scheduled daily run that is its
logical date (a CronTriggerTimetable run is queued at its trigger time), and unlike the logical date it stays
meaningful for a backfill of an old day, which would otherwise be "late" before it starts. The interval is
`EC2_AUDIT_REPORT_DEADLINE_MINUTES` (e.g. 240; unset or 0 = off). Off by default because Airflow 3.3.2's
`dag.test()` (and so `airflow dags test`) cannot run a DAG that has a deadline: it hands the scheduler code the
serialized alert instead of its stored id (AttributeError: 'dict' object has no attribute 'hex'); the scheduler
itself stores the alerts first and works. The notice goes to the run's `alert_recipients` (from its
conf) or else `EC2_AUDIT_DEADLINE_RECIPIENTS` (comma-separated), by email through `smtp_default`.

The callback runs in the triggerer (AsyncCallback): the scheduler queues it when the run has not finished by
the deadline — the report is the run's last product, so an unfinished run means no report yet.
"""
from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import Any

DEFAULT_MINUTES = 0  # off: see above
CALLBACK = "include.notify.deadline.report_late"


def interval() -> timedelta:
    return timedelta(minutes=float(os.environ.get("EC2_AUDIT_REPORT_DEADLINE_MINUTES") or DEFAULT_MINUTES))


def default_recipients() -> list[str]:
    return [r.strip() for r in os.environ.get("EC2_AUDIT_DEADLINE_RECIPIENTS", "").split(",") if r.strip()]


def alert():
    """The DAG's DeadlineAlert (None when the interval is 0: off)."""
    from airflow.sdk.definitions.deadline import AsyncCallback, DeadlineAlert, DeadlineReference

    if interval() <= timedelta(0):
        return None
    return DeadlineAlert(reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=interval(),
                         callback=AsyncCallback(CALLBACK, kwargs={"recipients": default_recipients(),
                                                                  "minutes": interval().total_seconds() / 60}))


def late_message(context: dict[str, Any], minutes: float) -> tuple[str, str, list[str]]:
    """(subject, html, recipients from the run's conf) of the notice. Pure."""
    from include.report.rendering import render

    run = context.get("dag_run") or {}
    conf = run.get("conf") or {}
    # The scheduler passes the run as the REST API's DAGRunResponse (dag_run_id), tests as plain fields.
    run_id = run.get("dag_run_id") or run.get("run_id") or "?"
    dag_id = run.get("dag_id", "ec2_audit_compliance")
    day = str(run.get("logical_date") or run.get("run_after") or "")[:10]
    deadline = (context.get("deadline") or {}).get("deadline_time", "")
    subject = f"LATE {dag_id}: the audit report for {day or run_id} is not out {minutes:g} min after the run was queued"
    from airflow.configuration import conf as airflow_conf

    base = airflow_conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    links = [(f"{base}/dags/{dag_id}/runs/{run_id}", "the run in Airflow")]
    html = render("late.html", subject=subject, run_id=run_id, deadline=deadline, links=links)
    recipients = [str(r) for r in conf.get("alert_recipients") or [] if str(r).strip()]
    return subject, html, recipients


async def report_late(context: dict[str, Any], recipients: list[str] | None = None, minutes: float = 0) -> None:
    from include.notify.email import send_report_email

    subject, html, from_conf = late_message(context, minutes)
    to = from_conf or list(recipients or [])
    if to:
        await asyncio.to_thread(send_report_email, conn_id="smtp_default", recipients=to, subject=subject,
                                html=html, attachments=[])
