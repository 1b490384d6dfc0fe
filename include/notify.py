"""Email the report through the SMTP provider (connection `smtp_default`)."""
from __future__ import annotations

DEFAULT_FROM = "ec2-audit@localhost"


def send_report_email(*, conn_id: str, recipients: list[str], subject: str, html: str, attachments: list[str],
                      from_email: str | None = None) -> None:
    if not recipients:
        return
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with SmtpHook(smtp_conn_id=conn_id) as hook:
        sender = from_email or hook.from_email or DEFAULT_FROM
        hook.send_email_smtp(to=list(recipients), subject=subject, html_content=html, files=list(attachments),
                             from_email=sender)
