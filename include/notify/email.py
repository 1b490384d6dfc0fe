"""Email the report through the SMTP provider (connection `smtp_default`)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_FROM = "ec2-audit@localhost"


def send_report_email(*, conn_id: str, recipients: list[str], subject: str, html: str,
                      attachments: Sequence[tuple[str, bytes] | str], from_email: str | None = None) -> None:
    """Attachments are (file name, bytes) — read by the caller from wherever the report lives (a local folder
    or s3://, include/report/storage.py) — or local paths. Each is attached under its file name, which is also its
    Content-ID (the report's trend chart is shown by `cid:<name>`)."""
    if not recipients:
        return
    import os
    import tempfile

    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with tempfile.TemporaryDirectory(prefix="ec2audit-mail-") as scratch, SmtpHook(smtp_conn_id=conn_id) as hook:
        files = []
        for attachment in attachments:
            if isinstance(attachment, str):
                files.append(attachment)
                continue
            filename, data = attachment
            safe = os.path.basename(filename)  # the hook attaches files by path: a private copy on this worker
            if not safe or safe in (".", ".."):
                raise ValueError(f"attachment name {filename!r} is not a file name")
            path = os.path.join(scratch, safe)
            with open(path, "wb") as fh:
                fh.write(data)
            files.append(path)
        sender = from_email or hook.from_email or DEFAULT_FROM
        hook.send_email_smtp(to=list(recipients), subject=subject, html_content=html, files=files,
                             from_email=sender)


@dataclass(frozen=True)
class FailureNotice:
    """What a failure notice says, whichever channel carries it (email here, Slack and SNS in channels.py)."""
    subject: str
    dag_id: str
    run_id: str
    what: str  # "task <task_id>" or "run"
    task_id: str | None
    reason: str  # at most 2,000 characters
    links: list[tuple[str, str]]  # (url, label): the run in Airflow first, then the task log if known

    @property
    def run_url(self) -> str:
        return self.links[0][0]

    @property
    def log_url(self) -> str | None:
        return self.links[1][0] if len(self.links) > 1 else None


def run_url(dag_id: str, run_id: str) -> str:
    """The run's page in the Airflow UI ([api] base_url)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
    return f"{base}/dags/{dag_id}/runs/{run_id}"


def failure_notice(context: dict) -> FailureNotice:
    """The facts of a failed task (after its retries) or a failed run, with links to Airflow."""
    dag_run, ti = context.get("dag_run"), context.get("ti")
    dag_id = getattr(dag_run, "dag_id", None) or getattr(ti, "dag_id", "ec2_audit_compliance")
    run_id = getattr(dag_run, "run_id", None) or context.get("run_id", "")
    task_id = getattr(ti, "task_id", None) if ti is not None else None
    what = f"task {task_id}" if task_id else "run"
    reason = context.get("exception") or context.get("reason") or "see the logs"
    subject = f"FAILED {dag_id}: {what} in {run_id}"
    links = [(run_url(dag_id, run_id), "the run in Airflow")]
    log_url = getattr(ti, "log_url", None) if ti is not None else None
    if log_url:
        links.append((str(log_url), "the task log"))
    return FailureNotice(subject, dag_id, run_id, what, task_id, str(reason)[:2000], links)


def failure_message(context: dict) -> tuple[str, str]:
    """Subject and HTML for a failed task (after its retries) or a failed run, with links to Airflow."""
    from include.report.rendering import render

    n = failure_notice(context)
    return n.subject, render("failure.html", subject=n.subject, what=n.what, run_id=n.run_id, reason=n.reason,
                             links=n.links)
