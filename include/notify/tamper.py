"""Tamper security events: what the watch (include/tasks/watch.py) alerts when a host's audit log says its audit
trail was tampered with (CONTRACT "Security events and checks between runs").

- `alert_at_once`: a rule deletion (`TAMPER_RULES_DELETED`) or `audit_enabled=0` (`TAMPER_AUDIT_DISABLED`) alerts
  before the re-check, naming the instance, its region, the record, when, how many records folded, and any
  remediation run on the host (a fix's own `augenrules --load` deletes the loaded rules before it loads the file's:
  it writes the very records a rule deletion alerts on, so the alert says so instead of staying silent).
- `after_recheck`: a clean daemon stop (`DAEMON_STOPPED` without a deletion or disable: a reboot or an upgrade writes
  one) alerts `TAMPER_DAEMON_STOPPED` only if the re-check made `tamper_grace_minutes` after the stop does not
  pass, with that verdict in the subject. The watched-check path (include/notify/security_events.py: a
  PASS → FAIL of auditd.running etc., HOST_KEY_MISMATCH) runs on the re-checked items too, but for a daemon-stopped
  host only on its final re-check, so a reboot's auditd.running FAIL in between alerts nothing.
- `needs_second_look`: whether the watch waits and re-checks a host again.

One alert per host per event occurrence, whatever the burst: a Recheck folds a run's records of a host into one,
and the occurrence is anchored on the host's latest observation checked before the event (its day and seq, as
security_events anchors a check's event on its last good observation), so the rest of the same burst read by a
later watch run is the same occurrence, while a tampering after the re-check is a new one. The claim is
security_events' conditional write on the host's `#security-event#` item; `delivered` records per channel which
alert it got, so a retry of the claiming run resends only to a channel that failed. A tamper event is alerted once
and not reminded of after `alert_repeat_days`: what lasts (rules not loaded, auditd down) is a watched check's
PASS → FAIL, reminded of by that path.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from include.core.clock import parse_moment
from include.core.status import Status
from include.evidence.records import EvidenceItem
from include.notify import channels as ch
from include.notify import security_events as se
from include.notify.event_store import EventState, Observation, SecurityEvent, SecurityEventStore
from include.watch.records import ALERT_AT_ONCE, AUDIT_DISABLED, DAEMON_STOPPED, RULES_DELETED, Recheck

log = logging.getLogger(__name__)

KINDS = {RULES_DELETED: "TAMPER_RULES_DELETED", AUDIT_DISABLED: "TAMPER_AUDIT_DISABLED",
         DAEMON_STOPPED: "TAMPER_DAEMON_STOPPED"}
WHAT = {RULES_DELETED: "audit rules deleted", AUDIT_DISABLED: "audit disabled (audit_enabled=0)",
        DAEMON_STOPPED: "auditd stopped"}
PASSING = (Status.COMPLIANT.value, Status.WAIVED.value, Status.NOT_APPLICABLE.value)
FIX_WINDOW_MINUTES = 60  # a remediation attempt recorded this long before the event, or later, is named
RECORD_MAX = 500  # characters of the record quoted
INTRO = ("Tamper events: the host's own audit log recorded its audit rules deleted, auditing disabled, or auditd "
         "stopped and not passing its re-check.")

ActiveFixes = Callable[[str], str]  # instance id → "remediation run … approved by …, applying" or ""


@dataclass(frozen=True)
class TamperEvent(SecurityEvent):
    """A security event whose message is its own (the record, the verdict), claimed like any other."""

    message: str = ""
    headline: str = ""  # the subject when it is the message's only event

    def line(self) -> str:
        return self.message


# ------------------------------------------------------------------ pure

def anchor_of(history: Iterable[Observation], first_at: str) -> tuple[str, str]:
    """(anchor, before) of the occurrence: the host's latest observation checked before the event. Every watch run
    reading records of the same burst finds the same one, the re-check that followed it being later than the
    event. An event whose moment cannot be read anchors on the latest observation (alerting rather than not)."""
    at = parse_moment(first_at)
    earlier = [o for o in history if at is None or ((m := parse_moment(o.checked_at)) is not None and m < at)]
    prev = max(earlier, key=lambda o: o.order, default=None)
    if prev is None:
        return "tamper||0|", "no earlier observation"
    return f"tamper|{prev.day}|{prev.seq}|{prev.checked_at}", f"last checked {prev.ref()}: {prev.status}"


def is_clean_stop(recheck: Recheck) -> bool:
    """Only a daemon stop among its tamper kinds (a reboot, an upgrade): alerted only if the re-check fails."""
    return DAEMON_STOPPED in recheck.tamper and not any(k in recheck.tamper for k in ALERT_AT_ONCE)


def passed(item: EvidenceItem | None) -> bool:
    """The re-check passed. No item (not re-checked) is not a pass."""
    return item is not None and item.status in PASSING


def needs_second_look(recheck: Recheck, item: EvidenceItem | None, tamper_grace_minutes: float) -> bool:
    """Pure. Whether the watch waits until `first_at + tamper_grace_minutes` and re-checks the host again: a clean
    daemon stop whose first re-check did not pass (the host may still be rebooting), when there is a grace."""
    return tamper_grace_minutes > 0 and is_clean_stop(recheck) and not passed(item)


def record_type(record: str) -> str:
    found = re.search(r"\btype=([A-Z_]+)", record or "")
    return found.group(1) if found else "the daemon stop"


def verdict(item: EvidenceItem | None) -> str:
    """The re-check's verdict as an alert says it: status (failed checks, else the status detail)."""
    if item is None:
        return "not re-checked (no evidence stored)"
    why = ", ".join(item.failed_checks) or (item.status_detail or "")[:200]
    return f"{item.status} ({why})" if why else item.status


def _where(recheck: Recheck) -> str:
    account = f" account {recheck.account}" if recheck.account else ""
    return f"{recheck.region}{account}"


def _record(recheck: Recheck) -> str:
    quoted = recheck.records[0] if recheck.records else "(no record kept)"
    return quoted if len(quoted) <= RECORD_MAX else quoted[:RECORD_MAX - 1] + "…"


def _fix_note(fix: str) -> str:
    return (f" Remediation on this host: {fix} (a fix's own augenrules --load deletes the loaded rules before "
            "loading them).") if fix else ""


def at_once_event(recheck: Recheck, kind: str, anchor: str, before: str, fix: str) -> TamperEvent:
    """The alert of a rule deletion or an audit disable, sent before the re-check."""
    n = recheck.events
    headline = f"{recheck.instance_id} {WHAT[kind]}"
    message = (f"{recheck.instance_id} ({_where(recheck)}): {WHAT[kind]} at {recheck.first_at or '(unknown time)'}, "
               f"{n} record{'s' if n != 1 else ''}: {_record(recheck)}. Before it: {before}.{_fix_note(fix)} "
               "A re-check follows.")
    return TamperEvent(recheck.instance_id, KINDS[kind], "new", anchor, before, _record(recheck), name="",
                       message=message, headline=headline)


def stop_event(recheck: Recheck, item: EvidenceItem | None, anchor: str, before: str, fix: str,
               grace: float) -> TamperEvent:
    """The alert of a daemon stop whose final re-check did not pass: the verdict in the headline."""
    n = recheck.events
    headline = f"{recheck.instance_id} re-checked after {record_type(recheck.records[0] if recheck.records else '')}: " \
               f"{verdict(item)}"
    message = (f"{headline}. auditd stopped at {recheck.first_at or '(unknown time)'} in {_where(recheck)}, "
               f"{n} record{'s' if n != 1 else ''}: {_record(recheck)}; not passing {grace:g} min after. "
               f"Before it: {before}.{_fix_note(fix)}")
    name = item.display_name if item is not None else ""
    return TamperEvent(recheck.instance_id, KINDS[DAEMON_STOPPED], "new", anchor, before, verdict(item), name=name,
                       message=message, headline=headline)


def title(day: str, events: Sequence[SecurityEvent]) -> str:
    """The subject: one host's tamper headline (what happened, or the re-check's verdict), else the counts."""
    tamper = [e for e in events if isinstance(e, TamperEvent) and e.headline]
    if len(tamper) == 1 and {e.instance_id for e in events} == {tamper[0].instance_id}:
        more = len(events) - 1  # e.g. the auditd.running PASS → FAIL the re-check shows
        return f"SECURITY EC2 audit {day}: {tamper[0].headline}" + (f" (+{more} more)" if more else "")
    return se.subject(day, events)


# ------------------------------------------------------------------ the whole path

def _events_store(store: Any) -> SecurityEventStore:
    return store if isinstance(store, SecurityEventStore) else SecurityEventStore(store)


def _targets(params: Any) -> tuple[list[str], ch.Channels, list[str]]:
    recipients, chans = se.recipients_for(params), ch.Channels.from_params(params)
    return recipients, chans, (["email"] if recipients else []) + chans.names


def _claim_due(store: SecurityEventStore, event: TamperEvent, state: EventState | None, targets: list[str],
               due: se.Due, *, day: str, run_id: str, ttl_days: int) -> bool:
    """Claim a new occurrence (conditional write), or — this run's own claim, retried — resend what a channel
    missed. False: nothing to send (alerted already: another run, worker, or the rest of the same burst)."""
    if state is None or state.anchor != event.anchor:
        event = replace(event, state=state)
        claimed = se.claim(store, event, day, run_id, ttl_days)
    elif state.alert_run == run_id:
        claimed = state
    else:
        return False
    queued = False
    for target in targets if claimed else []:
        if claimed.delivered.get(target) != claimed.alert_id:
            due[target].append((event, claimed))
            queued = True
    return queued


def _send(store: SecurityEventStore, due: se.Due, outcome: se.Outcome, *, day: str, run_id: str,
          recipients: list[str], chans: ch.Channels, what: str) -> str:
    """Send what is due (one message per channel); each channel's result goes into `outcome.results`."""
    if any(due.values()):
        se.deliver(store, due, outcome, day=day, recipients=recipients, chans=chans, run_url=_run_url(run_id),
                   smtp_conn_id=se.SMTP_CONN_ID, title=title, intro=INTRO)
    summary = f"{what}: {len(outcome.events)} alerted now, sent {outcome.sent or 'nowhere'}"
    log.info("%s %s", day, summary)
    return summary


def _failed(results: Mapping[str, Mapping], prefix: str) -> dict[str, Mapping]:
    return {f"{prefix}: {k}": v for k, v in results.items() if not v.get("ok")}


def alert_at_once(store: Any, rechecks: Sequence[Recheck], *, day: str, run_id: str, params: Any,
                  active_fixes: ActiveFixes) -> str:
    """Alert each host's rule deletion / audit disable now, before its re-check: one alert per (host, kind,
    occurrence) through `alert_recipients` (else `recipients`) and every channel. `store`: the evidence table
    (EvidenceStore) or its SecurityEventStore. Raises ChannelDeliveryError naming each channel that failed, after
    trying all (a retry of this run resends only to those)."""
    events_store = _events_store(store)
    recipients, chans, targets = _targets(params)
    if not targets:
        return "tamper alerts: no alert_recipients, recipients, slack_conn_id or sns_topic_arn: nowhere to send"
    outcome, due = se.Outcome(), {t: [] for t in targets}
    for recheck in rechecks:
        kinds = [k for k in ALERT_AT_ONCE if k in recheck.tamper]
        if not kinds:
            continue
        anchor, before = anchor_of(events_store.history(recheck.instance_id, day), recheck.first_at)
        states, fix = events_store.states(recheck.instance_id), active_fixes(recheck.instance_id)
        for kind in kinds:
            event = at_once_event(recheck, kind, anchor, before, fix)
            if _claim_due(events_store, event, states.get(event.kind), targets, due, day=day, run_id=run_id,
                          ttl_days=params.ttl_days):
                outcome.events.append(event)
    summary = _send(events_store, due, outcome, day=day, run_id=run_id, recipients=recipients, chans=chans,
                    what="tamper alerts at once")
    ch.raise_for_failures(_failed(outcome.results, "tamper alerts"), f"tamper alerts of {day}")
    return summary


def after_recheck(store: Any, rechecks: Sequence[Recheck], items: Iterable[EvidenceItem], *, day: str, run_id: str,
                  params: Any, active_fixes: ActiveFixes, final: bool) -> str:
    """After a re-check: `items` are the EvidenceItems it stored for `rechecks`' hosts. A clean daemon stop alerts
    `TAMPER_DAEMON_STOPPED` (the verdict in the subject) only when `final` and its re-check did not pass (no item
    is not a pass); the watched-check / host-key path (security_events) runs for every item, a clean-stop host's
    only when `final`. The watch calls it with final=False after the first re-check when a host needs a second
    look (`needs_second_look`), then with final=True, for those hosts, after re-checking them at
    first_at + tamper_grace_minutes; with no second look, once with final=True. Raises ChannelDeliveryError as
    alert_at_once does, after both paths tried every channel."""
    events_store = _events_store(store)
    recipients, chans, targets = _targets(params)
    by_host = {it.instance_id: it for it in items}
    held = {r.instance_id for r in rechecks if is_clean_stop(r)}
    grace = float(getattr(params, "tamper_grace_minutes", 0))
    outcome, due = se.Outcome(), {t: [] for t in targets}
    for recheck in rechecks if final and targets else []:
        item = by_host.get(recheck.instance_id)
        if recheck.instance_id not in held or passed(item):
            continue
        anchor, before = anchor_of(events_store.history(recheck.instance_id, day), recheck.first_at)
        event = stop_event(recheck, item, anchor, before, active_fixes(recheck.instance_id), grace)
        if _claim_due(events_store, event, events_store.states(recheck.instance_id).get(event.kind), targets, due,
                      day=day, run_id=run_id, ttl_days=params.ttl_days):
            outcome.events.append(event)
    # A clean-stop host's watched checks wait for its final re-check: auditd.running fails during a reboot.
    judged = [it for iid, it in by_host.items() if final or iid not in held]
    watched, watched_due = se.due_events(events_store, judged, day=day, run_id=run_id, targets=targets,
                                         repeat_days=params.alert_repeat_days, ttl_days=params.ttl_days)
    for target, pending in watched_due.items():  # one message per channel: the verdict and what it shows
        due[target].extend(pending)
    summary = _send(events_store, due, outcome, day=day, run_id=run_id, recipients=recipients, chans=chans,
                    what="tamper alerts after the re-check")
    ch.raise_for_failures(_failed(outcome.results, "security alerts"), f"security alerts of {day}")
    waiting = sorted(held & set(by_host)) if not final else []
    return f"{summary}; {watched.summary()}" + (f"; held until the final re-check: {waiting}" if waiting else "")


def _run_url(run_id: str) -> str:
    from include.notify import email as notify

    return notify.run_url("ec2_audit_watch", run_id)


def remediation_lookup(table: Any, rechecks: Sequence[Recheck], *, window_minutes: float = FIX_WINDOW_MINUTES,
                       now: datetime | None = None) -> ActiveFixes:
    """The real `active_fixes`: instance id → its remediation attempts recorded since `window_minutes` before the
    earliest event (include/tasks/remediate.py records an attempt `applying` before its fixes run, `unverified`
    once they ran, then its outcome), newest first, e.g.
    "remediation run manual__… approved by alice, fixes ran by …, not yet re-verified"; "" when none. One Query
    per host asked."""
    from include.core.clock import iso, utc_now
    from include.remediation.store import RemediationStore, describe_attempt

    moments = [m for r in rechecks if (m := parse_moment(r.first_at)) is not None]
    since = iso(min(moments, default=now or utc_now()) - timedelta(minutes=window_minutes))
    remediation = RemediationStore(table)

    def active(instance_id: str) -> str:
        return "; ".join(describe_attempt(r) for r in remediation.attempts_since(instance_id, since))

    return active
