"""Alerts and failure notices beyond email: Slack (incoming webhook) and Amazon SNS, through the providers.

Which channels a run uses comes from its params (`Channels.from_params`): `slack_conn_id` (an Airflow connection
of type `slackwebhook`), `sns_topic_arn` (+ `sns_aws_conn_id`, default `aws_default`). All off by default.

The payloads are built from the same data the emails are: a compliance alert from the `AlertDecision` of
include/notify/alerts.py (its `alert_rows`, `alerted_hosts` and `subject`), a failure notice from include/notify/email.py's
`failure_notice(context)`. They are sent with the providers' notifiers (`SlackWebhookNotifier`, `SnsNotifier`),
by calling `notify()` — never `__call__`, which would render Jinja templates in the text, and a host's output
or a tag could then inject template code.

Every channel is tried even when another fails. `deliver_*` returns one result per channel
(`{"slack": {"ok": True, ...}, "sns": {"ok": False, "error": "..."}}`), logs each failure, and — unless the
caller asks to store the results first (`raise_on_failure=False`, then `raise_for_failures`) — raises
`ChannelDeliveryError` naming every channel that failed. Errors name the connection id, never the webhook URL
(it is the secret).
"""
from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from include.notify import alerts
from include.settings.connections import AWS_CONN_ID

log = logging.getLogger(__name__)

SLACK, SNS = "slack", "sns"
SNS_SUBJECT_MAX = 100  # SNS refuses longer subjects (and line breaks, control characters)
SNS_MESSAGE_MAX = 256 * 1024  # bytes, the whole Publish payload
SNS_HOSTS_MAX = 1000  # host ids listed in an SNS message; the counts are always complete
SLACK_HEADER_MAX = 150  # a header block's plain text
SLACK_SECTION_MAX = 3000  # a section block's text
SLACK_LINES_MAX = 25  # findings listed in a Slack message; the rest are in the report and the email
SLACK_TIMEOUT_S = 30
TOPIC_ARN = re.compile(r"arn:aws(-[a-z]+)*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}")  # fullmatch


class ChannelDeliveryError(RuntimeError):
    """One or more channels failed; `results` holds every channel's result, the successful ones too."""

    def __init__(self, message: str, results: dict[str, dict]) -> None:
        super().__init__(message)
        self.results = results


@dataclass(frozen=True)
class Channels:
    slack_conn_id: str | None = None
    sns_topic_arn: str | None = None
    sns_aws_conn_id: str | None = None  # None → aws_default

    def problems(self) -> list[str]:
        """What is wrong with the settings, each naming its param (AuditParams.semantic_problems can add them).
        Never raised on construction: a failure notifier must still email when a channel's param is bad."""
        if self.sns_topic_arn and not TOPIC_ARN.fullmatch(self.sns_topic_arn):
            return [f"param sns_topic_arn: {self.sns_topic_arn!r} is not a standard SNS topic ARN "
                    "(arn:aws:sns:<region>:<account>:<name>; FIFO topics are not supported)"]
        return []

    @classmethod
    def from_params(cls, params: Any) -> "Channels":
        """From the run's params: a mapping (context["params"]) or an object with the fields (AuditParams).
        Missing or empty means off."""
        def get(name: str) -> str | None:
            value = params.get(name) if isinstance(params, Mapping) else getattr(params, name, None)
            return (str(value).strip() or None) if value is not None else None

        return cls(get("slack_conn_id"), get("sns_topic_arn"), get("sns_aws_conn_id"))

    @property
    def names(self) -> list[str]:
        return [name for name, on in ((SLACK, self.slack_conn_id), (SNS, self.sns_topic_arn)) if on]

    def __bool__(self) -> bool:
        return bool(self.names)

    def target(self, channel: str) -> str:
        """What a result and an error name: the connection id or the topic ARN (never a webhook URL)."""
        return f"connection {self.slack_conn_id!r}" if channel == SLACK else f"topic {self.sns_topic_arn}"

    @property
    def sns_region(self) -> str | None:
        return self.sns_topic_arn.split(":")[3] if self.sns_topic_arn and not self.problems() else None


@dataclass(frozen=True)
class AlertNotice:
    """A compliance alert: the arguments the alert email is built from (include/notify/alerts.py), plus the links."""
    day: str
    decision: alerts.AlertDecision
    names: dict[str, str] = field(default_factory=dict)  # instance id → Name tag
    compliance_pct: float | None = None
    run_url: str = ""  # the run in Airflow (include/notify/email.py: run_url)
    report: str = ""  # where the full report is: built["paths"]["html"] (a path or s3:// / https:// URL)

    @property
    def keys(self) -> list[str]:
        return [f.key for f in self.decision.alert]

    def subject(self) -> str:
        return alerts.subject(self.day, self.decision, self.compliance_pct)

    def rows(self, limit: int = alerts.MAX_ROWS) -> list[alerts.AlertRow]:
        return alerts.alert_rows(self.decision, self.names, limit)

    def without(self, keys: Iterable[str]) -> "AlertNotice":
        """The same notice minus findings already delivered (a retried task on a channel that got them)."""
        skip = set(keys)
        if not skip:
            return self
        return replace(self, decision=replace(self.decision, alert=[f for f in self.decision.alert
                                                                    if f.key not in skip]))


# ------------------------------------------------------------------ payloads (pure)

def slack_escape(text: Any) -> str:
    """Slack mrkdwn control characters (a tag `<!channel>` or `<http://x|click>` stays text)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_link(url: str, label: str) -> str:
    if not url.startswith(("http://", "https://")):
        return f"{label}: `{slack_escape(url)}`"
    return f"<{slack_escape(url).replace('|', '%7C')}|{slack_escape(label)}>"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value}%"


def alert_facts(notice: AlertNotice) -> dict[str, Any]:
    """The numbers every channel states, from the decision (include/notify/alerts.py)."""
    d = notice.decision
    return {"hosts_alerted": alerts.alerted_hosts(d), "hosts_newly_failing": alerts.alerted_hosts(d, new_only=True),
            "findings": len(d.alert), "reminders": sum(f.key in d.reminders for f in d.alert),
            "below_threshold": any(f.key == alerts.THRESHOLD_KEY for f in d.alert), "closed": len(d.closed)}


def slack_alert(notice: AlertNotice) -> dict[str, Any]:
    """`text` (the notification's fallback) and Block Kit `blocks` for a compliance alert."""
    facts, subject = alert_facts(notice), notice.subject()
    summary = (f"*Compliance:* {_pct(notice.compliance_pct)}   *Hosts newly failing:* "
               f"{len(facts['hosts_newly_failing'])}   *Findings:* {facts['findings']} "
               f"({facts['reminders']} reminder{'s' if facts['reminders'] != 1 else ''})   "
               f"*Closed since last run:* {facts['closed']}")
    lines, used = [], 0
    rows = notice.rows(SLACK_LINES_MAX)
    for row in rows:
        name = f" ({slack_escape(row.name)})" if row.name else ""
        line = (f"• `{slack_escape(row.instance_id)}`{name} `{slack_escape(row.check_id)}` {row.state}: "
                f"{slack_escape(_cut(row.detail, 150))}")
        if used + len(line) + 1 > SLACK_SECTION_MAX - 80:
            break
        lines.append(line)
        used += len(line) + 1
    if (more := facts["findings"] - len(lines)) > 0:
        lines.append(f"…and {more} more in the report")
    links = [_slack_link(notice.run_url, "the run in Airflow")] if notice.run_url else []
    if notice.report:
        links.append(_slack_link(notice.report, "the report"))
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": _cut(subject, SLACK_HEADER_MAX)}},
              {"type": "section", "text": {"type": "mrkdwn", "text": summary}}]
    if lines:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}})
    if links:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(links)}]})
    return {"text": slack_escape(f"{subject} (compliance {_pct(notice.compliance_pct)})"), "blocks": blocks}


def sns_subject(text: str) -> str:
    """SNS's rules: ASCII, no line breaks or control characters, at most 100 characters."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    clean = " ".join("".join(c if c.isprintable() else " " for c in ascii_text).split())
    return clean if len(clean) <= SNS_SUBJECT_MAX else clean[:SNS_SUBJECT_MAX - 3].rstrip() + "..."


def _fits(message: dict) -> str:
    return json.dumps(message, ensure_ascii=False, sort_keys=True)


def sns_alert(notice: AlertNotice) -> tuple[str, str]:
    """(subject, message): the message is JSON, for subscribers that parse it (a queue, a Lambda)."""
    facts = alert_facts(notice)
    rows = notice.rows()
    message = {
        "event": "compliance_alert", "audit_date": notice.day, "subject": notice.subject(),
        "compliance_pct": notice.compliance_pct, "below_threshold": facts["below_threshold"],
        "hosts_newly_failing_count": len(facts["hosts_newly_failing"]),
        "hosts_newly_failing": facts["hosts_newly_failing"][:SNS_HOSTS_MAX],
        "hosts_alerted_count": len(facts["hosts_alerted"]), "hosts_alerted": facts["hosts_alerted"][:SNS_HOSTS_MAX],
        "findings_total": facts["findings"], "reminders": facts["reminders"], "closed": facts["closed"],
        "findings": [{"instance_id": r.instance_id, "name": r.name, "check_id": r.check_id,
                      "state": "reminder" if r.reminder else "new", "first_seen": r.first_seen, "detail": r.detail}
                     for r in rows],
        "run_url": notice.run_url, "report": notice.report,
    }
    body = _fits(message)
    while len(body.encode()) > SNS_MESSAGE_MAX - 4096 and message["findings"]:  # room for the subject, JSON wrap
        message["findings"] = message["findings"][:len(message["findings"]) // 2]
        body = _fits(message)
    return sns_subject(notice.subject()), body


def slack_failure(notice) -> dict[str, Any]:
    """A failed task or run (include/notify/email.py: FailureNotice)."""
    links = " · ".join(_slack_link(url, label) for url, label in notice.links)
    reason = slack_escape(_cut(notice.reason, SLACK_SECTION_MAX - 200)).replace("```", "'''")
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": _cut(notice.subject, SLACK_HEADER_MAX)}},
              {"type": "section", "text": {"type": "mrkdwn", "text":
                  f"*{slack_escape(notice.what[:1].upper() + notice.what[1:])}* of `{slack_escape(notice.dag_id)}` failed in run "
                  f"`{slack_escape(notice.run_id)}`:\n```{reason}```"}},
              {"type": "context", "elements": [{"type": "mrkdwn", "text": links}]}]
    return {"text": slack_escape(notice.subject), "blocks": blocks}


def sns_failure(notice) -> tuple[str, str]:
    message = {"event": "pipeline_failure", "subject": notice.subject, "dag_id": notice.dag_id,
               "run_id": notice.run_id, "task_id": notice.task_id, "what": notice.what, "reason": notice.reason,
               "run_url": notice.run_url, "log_url": notice.log_url}
    return sns_subject(notice.subject), _fits(message)


# ------------------------------------------------------------------ delivery (the providers' notifiers)

def _send_slack(conn_id: str, payload: dict[str, Any], context: Mapping) -> None:
    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    SlackWebhookNotifier(slack_webhook_conn_id=conn_id, text=payload["text"], blocks=payload["blocks"],
                         unfurl_links=False, unfurl_media=False, timeout=SLACK_TIMEOUT_S).notify(context)


def _send_sns(channels: Channels, subject: str, message: str, event: str, context: Mapping) -> None:
    from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

    if problems := channels.problems():
        raise ValueError("; ".join(problems))
    SnsNotifier(aws_conn_id=channels.sns_aws_conn_id or AWS_CONN_ID, target_arn=channels.sns_topic_arn,
                region_name=channels.sns_region, subject=subject, message=message,
                message_attributes={"event": event}).notify(context)


def attempt(channel: str, target: str, what: str, send) -> dict[str, Any]:
    """Run one channel's `send()`: {"ok": True, "target"} or {"ok": False, "target", "error"} (logged at ERROR
    with the traceback). Public so the caller can record the email the same way beside Slack and SNS."""
    try:
        send()
    except Exception as exc:  # noqa: BLE001 - recorded, logged, and raised for all channels at once
        error = _cut(f"{type(exc).__name__}: {exc}", 500)
        log.error("%s not delivered to %s (%s): %s", what, channel, target, error, exc_info=True)
        return {"ok": False, "target": target, "error": error}
    log.info("%s delivered to %s (%s)", what, channel, target)
    return {"ok": True, "target": target}


def raise_for_failures(results: Mapping[str, Mapping], what: str) -> None:
    failed = {ch: r for ch, r in results.items() if not r.get("ok")}
    if failed:
        raise ChannelDeliveryError(f"{what} not delivered to " + "; ".join(
            f"{ch} ({r['target']}): {r['error']}" for ch, r in failed.items()), dict(results))


def deliver_alert(channels: Channels, notice: AlertNotice, *, context: Mapping | None = None,
                  delivered_before: Mapping[str, Iterable[str]] | None = None,
                  raise_on_failure: bool = True) -> dict[str, dict]:
    """Send the alert to each configured channel. `delivered_before`: channel → finding keys it already got
    (from the day's `#alerts` record), so a retried task resends only what a channel missed. Each result
    carries the `keys` that channel now has delivered by this call."""
    results: dict[str, dict] = {}
    for channel in channels.names:
        pending = notice.without((delivered_before or {}).get(channel, ()))
        if not pending.decision.alert:
            results[channel] = {"ok": True, "target": channels.target(channel), "keys": [], "sent": 0}
            continue
        if channel == SLACK:
            send = lambda p=pending: _send_slack(channels.slack_conn_id, slack_alert(p), context or {})  # noqa: E731
        else:
            send = lambda p=pending: _send_sns(channels, *sns_alert(p), "compliance_alert", context or {})  # noqa: E731
        result = attempt(channel, channels.target(channel), f"compliance alert {notice.day}", send)
        ok = result["ok"]
        results[channel] = {**result, "keys": pending.keys if ok else [], "sent": len(pending.keys) if ok else 0}
    if raise_on_failure:
        raise_for_failures(results, f"compliance alert {notice.day}")
    return results


def deliver_payload(channels: Channels, channel: str, what: str, *, slack, sns, event: str,
                    context: Mapping | None = None) -> dict[str, Any]:
    """One message to one channel, built only when sent: `slack()` → the webhook payload, `sns()` →
    (subject, message); `event` is the SNS message attribute. The result as `attempt` returns it."""
    if channel == SLACK:
        send = lambda: _send_slack(channels.slack_conn_id, slack(), context or {})  # noqa: E731
    else:
        send = lambda: _send_sns(channels, *sns(), event, context or {})  # noqa: E731
    return attempt(channel, channels.target(channel), what, send)


def delivered_keys(previous: Mapping[str, Iterable[str]] | None, results: Mapping[str, Mapping]) -> dict[str, list]:
    """channel → every finding key delivered so far (previous ∪ this call), for the day's `#alerts` record."""
    merged = {ch: set(keys) for ch, keys in (previous or {}).items()}
    for ch, r in results.items():
        merged.setdefault(ch, set()).update(r.get("keys") or [])
    return {ch: sorted(keys) for ch, keys in sorted(merged.items())}


def deliver_failure(channels: Channels, context: Mapping, *, raise_on_failure: bool = True) -> dict[str, dict]:
    """A failed task or run, to each configured channel (the same facts as the failure email)."""
    from include.notify.email import failure_notice

    if not channels:
        return {}
    notice = failure_notice(dict(context))
    results: dict[str, dict] = {}
    for channel in channels.names:
        if channel == SLACK:
            send = lambda: _send_slack(channels.slack_conn_id, slack_failure(notice), context)  # noqa: E731
        else:
            send = lambda: _send_sns(channels, *sns_failure(notice), "pipeline_failure", context)  # noqa: E731
        results[channel] = attempt(channel, channels.target(channel), f"failure notice ({notice.subject})", send)
    if raise_on_failure:
        raise_for_failures(results, f"failure notice ({notice.subject})")
    return results


# ------------------------------------------------------------------ the DAG's failure callback

try:
    from airflow.sdk import BaseNotifier
except ImportError:  # pragma: no cover - outside Airflow
    BaseNotifier = object  # type: ignore[assignment,misc]


class PipelineFailureNotifier(BaseNotifier):
    """Tells `alert_recipients` (email, through the SMTP provider) and the run's Slack / SNS channels
    (`slack_conn_id`, `sns_topic_arn` params; include/notify/channels.py) when a task or the run fails. Every channel
    is tried; then the callback raises naming each one that failed (Airflow logs a callback's error)."""

    template_fields = ("recipients",)

    def __init__(self, recipients: str = "{{ (params.alert_recipients or []) | join(',') }}",
                 conn_id: str = "smtp_default") -> None:
        super().__init__()
        self.recipients, self.conn_id = recipients, conn_id

    def notify(self, context) -> None:
        from include.notify import email as notify

        to = [r.strip() for r in str(self.recipients or "").split(",") if r.strip()]
        results = {}
        if to:
            subject, html = notify.failure_message(context)
            results["email"] = attempt(
                "email", f"connection {self.conn_id!r}", f"failure notice ({subject})",
                lambda: notify.send_report_email(conn_id=self.conn_id, recipients=to, subject=subject, html=html,
                                                 attachments=[]))
        chans = Channels.from_params(context.get("params") or {})
        results.update(deliver_failure(chans, context, raise_on_failure=False))
        raise_for_failures(results, "failure notice")
