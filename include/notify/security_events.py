"""Security events: alerted at once, apart from the daily report (CONTRACT "Security events and checks between
runs").

An event is, for one host:
- `HOST_KEY_MISMATCH`: the host presented another key than its pin;
- a watched check (`auditd.running`, `auditd.rules_loaded`, every `cwagent.*`) that FAILs now while the host's
  latest earlier observation of that check PASSed. "Observation of a check" = a stored item (any day, an earlier
  version of today included) where the check has a verdict, PASS or FAIL: an item where the host was not reached
  or the check could not be judged says nothing about it and is skipped. Fail → fail, and a host whose first
  observation fails, are no event (the daily compliance alert covers failing hosts).

Each (host, event) alerts once per occurrence and again every `alert_repeat_days` while it lasts (0 = never
again). An occurrence is anchored on the observation that was still good before it (for a check: the passing
one; for the key: the last observation where the key was trusted, plus the key offered now), so a rerun of the
day is the same occurrence, and a host that recovers and fails again is a new one.

State, one item per occurrence, beside the evidence and never over it: partition `#security-event#<instance>`,
sort key `<first seen day>#<kind>` (a day first, like a version's `<day>#v#<seq>`). Whoever claims an alert does
so with a conditional write, so another worker or run of the day never sends it twice; `delivered` records, per
channel, which alert that channel got, so a retry of the claiming run resends only to the channels that failed.

Detection is pure (`detect`); `send_security_events` is the whole path and takes the evidence items to judge
(EvidenceItem records), so the daily run passes the hosts it checked (SecurityEventStore.candidates) and the
event-driven watch the hosts it re-checked. Every read and write goes through SecurityEventStore
(include/notify/event_store.py), which returns records. Reads: one Query per host that now fails a watched check or mismatches (its recent observations), one Query of
its event items; hosts that pass cost nothing.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from include.core.clock import days_between
from include.core.status import CheckStatus
from include.evidence.records import EvidenceItem
from include.notify import channels as ch
from include.notify.event_store import HOST_KEY, WATCHED, EventState, Observation, SecurityEvent, SecurityEventStore

log = logging.getLogger(__name__)

MAX_LINES = 200  # a message lists at most this many events; the count is always complete
SMTP_CONN_ID = "smtp_default"
READS_AT_ONCE = 8  # failing hosts whose history and occurrences are read concurrently (two Queries a host)
READ_CHUNK = 256  # ...and read ahead of the claims: bounds the histories held at once


# ------------------------------------------------------------------ records
# Observation, EventState and SecurityEvent, what the store reads and writes, live with it
# (include/notify/event_store.py).

# ------------------------------------------------------------------ detection (pure)

def failing_now(current: Observation) -> dict[str, str]:
    """kind → what is wrong now, for the kinds this observation shows."""
    if current.status == HOST_KEY:
        return {HOST_KEY: f"pinned {current.pinned_key}, offered {current.offered_key or '(unknown)'}"}
    return {c: current.detail(c) for c in WATCHED if current.verdict(c) == CheckStatus.FAIL}


def _saw(observation: Observation, kind: str) -> bool:
    """Whether this observation says anything about `kind`: the check judged, or the host key compared."""
    if kind == HOST_KEY:
        return observation.status == HOST_KEY or bool(observation.host_key_fingerprint)
    return observation.verdict(kind) in (CheckStatus.PASS, CheckStatus.FAIL)


def previous(history: Iterable[Observation], current: Observation, kind: str) -> Observation | None:
    """The latest observation of `kind` strictly before `current` (the current one itself is skipped)."""
    earlier = [o for o in history if o.order < current.order and _saw(o, kind)]
    return max(earlier, key=lambda o: o.order, default=None)



def detect(current: Observation, history: Sequence[Observation], states: Mapping[str, EventState], day: str,
           repeat_days: int) -> list[SecurityEvent]:
    """The host's events now, each new / reminder / quiet. `states`: kind → the host's latest stored occurrence."""
    events = []
    for kind, detail in failing_now(current).items():
        prev, state = previous(history, current, kind), states.get(kind)
        if kind == HOST_KEY:
            offered = current.offered_key
            if prev is not None and prev.status != HOST_KEY:  # trusted before: this change starts an occurrence
                anchor, before = f"{prev.day}|{prev.run_id}|{prev.seq}|{offered}", f"key trusted on {prev.ref()}"
            elif state is not None and state.anchor.endswith(f"|{offered}"):
                anchor, before = state.anchor, state.before  # the same mismatch, lasting
            else:  # no earlier trusted observation known: the mismatch itself is the event
                anchor, before = f"||0|{offered}", "no earlier trusted observation"
        else:
            if prev is not None and prev.verdict(kind) == CheckStatus.PASS:
                anchor, before = f"{prev.day}|{prev.run_id}|{prev.seq}", f"passed on {prev.ref()}"
            elif state is not None:
                anchor, before = state.anchor, state.before  # still failing since the stored occurrence
            else:
                continue  # fail → fail, or first seen failing: not an event
        base = SecurityEvent(current.instance_id, kind, "new", anchor, before, detail, day, current.name, state)
        if state is None or state.anchor != anchor:
            events.append(base)
        elif repeat_days > 0 and days_between(state.last_alerted, day) >= repeat_days:
            events.append(replace(base, action="reminder", first_seen=state.first_seen))
        else:
            events.append(replace(base, action="quiet", first_seen=state.first_seen))
    return events


def alert_id(day: str, run_id: str, event: SecurityEvent) -> str:
    return f"{day}|{run_id}|{event.action}"


# ------------------------------------------------------------------ messages (pure)

def subject(day: str, events: Sequence[SecurityEvent]) -> str:
    hosts = len({e.instance_id for e in events})
    kinds = sorted({e.kind for e in events})
    return (f"SECURITY EC2 audit {day}: {len(events)} security event{'s' if len(events) != 1 else ''} on {hosts} "
            f"host{'s' if hosts != 1 else ''} ({', '.join(kinds)})")


def render_html(day: str, events: Sequence[SecurityEvent], run_url: str = "", intro: str = "") -> str:
    from include.report.rendering import render

    rows = [[e.instance_id, e.name, e.kind, "reminder" if e.action == "reminder" else "new", e.line()]
            for e in events[:MAX_LINES]]
    return render("security.html", day=day, total=len(events), rows=rows, more=len(events) - MAX_LINES,
                  run_url=run_url, intro=intro)


def slack_payload(day: str, events: Sequence[SecurityEvent], run_url: str = "",
                  title: str = "") -> dict[str, Any]:
    title = title or subject(day, events)
    lines, used = [], 0
    for e in events[:ch.SLACK_LINES_MAX]:
        line = f"• {ch.slack_escape(ch._cut(e.line(), 400))}"
        if used + len(line) + 1 > ch.SLACK_SECTION_MAX - 80:
            break
        lines.append(line)
        used += len(line) + 1
    if (more := len(events) - len(lines)) > 0:
        lines.append(f"…and {more} more in the email")
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": ch._cut(title, ch.SLACK_HEADER_MAX)}},
              {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]
    if run_url:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                         "text": ch._slack_link(run_url, "the run in Airflow")}]})
    return {"text": ch.slack_escape(title), "blocks": blocks}


def sns_payload(day: str, events: Sequence[SecurityEvent], run_url: str = "", title: str = "") -> tuple[str, str]:
    title = title or subject(day, events)
    message = {"event": "security_event", "audit_date": day, "subject": title,
               "events_total": len(events), "hosts": sorted({e.instance_id for e in events})[:ch.SNS_HOSTS_MAX],
               "events": [{"instance_id": e.instance_id, "name": e.name, "kind": e.kind,
                           "state": "reminder" if e.action == "reminder" else "new", "first_seen": e.first_seen,
                           "before": e.before, "detail": e.detail, "message": e.line()} for e in events],
               "run_url": run_url}
    body = json.dumps(message, ensure_ascii=False, sort_keys=True)
    while len(body.encode()) > ch.SNS_MESSAGE_MAX - 4096 and message["events"]:
        message["events"] = message["events"][:len(message["events"]) // 2]
        body = json.dumps(message, ensure_ascii=False, sort_keys=True)
    return ch.sns_subject(title), body


# ------------------------------------------------------------------ claims (include/notify/event_store.py)

def claim(store: SecurityEventStore, event: SecurityEvent, day: str, run_id: str,
          ttl_days: int) -> EventState | None:
    """Record that this run alerts `event` now, unless another worker or run did first (conditional write)."""
    new = EventState.claimed(event, day, run_id, alert_id(day, run_id, event))
    if store.claim(new, event.state, ttl_days):
        return new
    log.info("%s: claimed by another worker or run first", event.key)
    return None


# ------------------------------------------------------------------ the whole path

def recipients_for(params: Any) -> list[str]:
    """`alert_recipients`, else `recipients` (CONTRACT)."""
    return list(getattr(params, "alert_recipients", None) or getattr(params, "recipients", None) or [])


@dataclass
class Outcome:
    events: list[SecurityEvent] = field(default_factory=list)  # every event found now, quiet ones too
    sent: dict[str, int] = field(default_factory=dict)  # channel → events it got in this call
    results: dict[str, dict] = field(default_factory=dict)  # channel → {"ok", "target", ...} (channels.attempt)

    def summary(self) -> str:
        loud = sum(e.action != "quiet" for e in self.events)
        return f"security events: {len(self.events)} open, {loud} due now, sent {self.sent or 'nowhere'}"


Due = dict[str, list[tuple[SecurityEvent, EventState]]]  # channel → (event, its claimed state) to send it


def _with_reads(store: SecurityEventStore, items: Iterable[EvidenceItem], day: str,
                ) -> Iterator[tuple[Observation, list[Observation], dict[str, EventState]]]:
    """Each failing observation with its host's history and stored occurrences. The two reads of a host are
    independent of every other host's, so READS_AT_ONCE hosts are read at a time (at 10,000 hosts with 40 %
    failing, one at a time was 8,000 sequential round trips); READ_CHUNK bounds what is held at once."""
    failing = [o for o in map(Observation.from_evidence, items) if failing_now(o)]

    def read(o: Observation) -> tuple[list[Observation], dict[str, EventState]]:
        return store.history(o.instance_id, day), store.states(o.instance_id)

    with ThreadPoolExecutor(READS_AT_ONCE, thread_name_prefix="security-reads") as pool:
        for start in range(0, len(failing), READ_CHUNK):
            chunk = failing[start:start + READ_CHUNK]
            for current, (history, states) in zip(chunk, pool.map(read, chunk)):
                yield current, history, states


def due_events(store: SecurityEventStore, items: Iterable[EvidenceItem], *, day: str, run_id: str,
               targets: Sequence[str], repeat_days: int, ttl_days: int) -> tuple[Outcome, Due]:
    """Detect these observations' events and claim those due now: (every event found, channel → what to send).
    The tamper alerts (include/notify/tamper.py) add theirs to the same messages."""
    outcome = Outcome()
    due: Due = {t: [] for t in targets}
    if not targets:
        return outcome, due
    for current, history, states in _with_reads(store, items, day):
        for event in detect(current, history, states, day, repeat_days):
            outcome.events.append(event)
            if event.action != "quiet":
                claimed = claim(store, event, day, run_id, ttl_days)
            elif event.state is not None and event.state.alert_run == run_id:
                claimed = event.state  # this run's own alert: a retry resends what a channel missed
                event = replace(event, action="reminder" if "|reminder" in claimed.alert_id else "new")
            else:
                claimed = None
            for target in targets if claimed else []:
                if claimed.delivered.get(target) != claimed.alert_id:
                    due[target].append((event, claimed))
    outcome.events.sort(key=lambda e: e.key)
    return outcome, due


def deliver(store: SecurityEventStore, due: Due, outcome: Outcome, *, day: str, recipients: Sequence[str],
            chans: ch.Channels, run_url: str = "", context: Mapping | None = None, smtp_conn_id: str = SMTP_CONN_ID,
            title: Callable[[str, Sequence[SecurityEvent]], str] = subject, intro: str = "") -> None:
    """Send each channel its due events in one message, and record per claimed state which channel got it
    (a retry of the claiming run resends only to the channels that failed). Results go into `outcome`.
    `title` makes the subject / header (the tamper events' say the host and the re-check's verdict)."""
    from include.notify import email as notify

    for target, pending in due.items():
        if not pending:
            continue
        pending.sort(key=lambda p: p[0].key)
        events = [e for e, _ in pending]
        what = f"security events {day}"
        if target == "email":
            send = lambda ev=events: notify.send_report_email(  # noqa: E731
                conn_id=smtp_conn_id, recipients=list(recipients), subject=title(day, ev),
                html=render_html(day, ev, run_url, intro=intro), attachments=[])
            result = ch.attempt("email", f"connection {smtp_conn_id!r}", what, send)
        else:
            result = ch.deliver_payload(
                chans, target, what, slack=lambda ev=events: slack_payload(day, ev, run_url, title=title(day, ev)),
                sns=lambda ev=events: sns_payload(day, ev, run_url, title=title(day, ev)), event="security_event",
                context=context)
        outcome.results[target] = {**result, "sent": len(events) if result["ok"] else 0}
        if result["ok"]:
            outcome.sent[target] = len(events)
            for _, state in pending:
                store.mark_delivered(state, target)


def send_security_events(store: SecurityEventStore, items: Iterable[EvidenceItem], *, day: str, run_id: str,
                         recipients: Sequence[str], chans: ch.Channels, repeat_days: int, ttl_days: int,
                         run_url: str = "", context: Mapping | None = None,
                         smtp_conn_id: str = SMTP_CONN_ID) -> Outcome:
    """Judge these observations (the current items of the hosts a run checked) and alert what is due, once, to
    email and every configured channel. Never raises for a channel: the caller raises with `results`."""
    targets = (["email"] if recipients else []) + chans.names
    outcome, due = due_events(store, items, day=day, run_id=run_id, targets=targets, repeat_days=repeat_days,
                              ttl_days=ttl_days)
    deliver(store, due, outcome, day=day, recipients=recipients, chans=chans, run_url=run_url, context=context,
            smtp_conn_id=smtp_conn_id)
    log.info("%s %s", day, outcome.summary())
    return outcome
