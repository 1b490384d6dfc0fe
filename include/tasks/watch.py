"""The Airflow-facing steps of the watch between daily runs (dags/ec2_audit_watch.py; CONTRACT "Security events
and checks between runs").

collect → plan → verify (the daily DAG's own step, mapped) → finish → second look. A run takes the messages it
was given (the asset events' payloads, or a manual replay's `events`), folds them into one re-check per host
(include/watch/plan.py) and checks those hosts through exactly the daily path: the same discovery-free batches,
transports, checks, evidence (a new current item, the one before kept as a version), seal and alerts. Only the
trigger differs: `launch`, `tamper` or `silence`, and each item says why (`trigger_detail`).

A launch waits `launch_grace_minutes` for the host to boot: with a queue the re-check goes back on it with a
delay (durable, holds no worker), without one (a replay) the run waits. A clean daemon stop that does not pass
at once is looked at again after `tamper_grace_minutes`, and alerts only then.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from include.core.clock import iso, parse_moment, utc_now
from include.settings.params import AuditParams
from include.watch.messages import ID_RE, REGION_RE
from include.watch.records import PRIORITY, SILENCE, TAMPER, Recheck, Rejected, WatchEvent, WatchPlan

log = logging.getLogger(__name__)

QUEUE_ENV = "EC2_AUDIT_EVENTS_QUEUE_URL"
MAX_DELAY_S = 900  # SQS DelaySeconds' maximum
DUE_SOURCE, DUE_TYPE = "ec2-audit.watch", "Re-check due"  # the watch's own deferred re-checks on the queue


def queue_url() -> str:
    return os.environ.get(QUEUE_ENV, "").strip()


# ------------------------------------------------------------------ the watch's own "re-check due" messages

def due_message(recheck: Recheck) -> dict[str, Any]:
    """A re-check sent back to the queue until it is due (a launch's boot, a clean stop's grace)."""
    return {"source": DUE_SOURCE, "detail-type": DUE_TYPE, "region": recheck.region, "time": iso(utc_now()),
            "detail": recheck.to_xcom()}


def read_due(body: Any) -> Recheck | None:
    """The Recheck a due message carries, None for any other message (collect then checks whose scope it names:
    anyone who may send to the queue could write one)."""
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None
    if not isinstance(body, Mapping) or body.get("source") != DUE_SOURCE or body.get("detail-type") != DUE_TYPE:
        return None
    detail = body.get("detail")
    if not isinstance(detail, Mapping) or not ID_RE.match(str(detail.get("instance_id", ""))):
        return None
    try:
        recheck = Recheck.from_xcom(detail)
    except TypeError:  # a field missing: not one of ours
        return None
    return recheck if recheck.trigger in PRIORITY and REGION_RE.match(recheck.region or "") else None


def send_later(client, url: str, rechecks: Iterable[Recheck], now: datetime) -> int:
    """Each re-check back on the queue, delayed until its not_before (≤ 15 min: a longer wait comes round again)."""
    sent = 0
    for r in rechecks:
        due = parse_moment(r.not_before) or now
        delay = max(0, min(MAX_DELAY_S, int((due - now).total_seconds()) + 1))
        client.send_message(QueueUrl=url, MessageBody=json.dumps(due_message(r)), DelaySeconds=delay)
        sent += 1
    return sent


# ------------------------------------------------------------------ collect

def message_bodies(context: Mapping[str, Any]) -> list[tuple[Any, str]]:
    """(body, message id) of every message this run was given: the triggering asset events' payloads (the
    AssetWatcher's SQS messages, durable there) and a manual replay's conf `events`."""
    from include.watch import messages

    extras = []
    for events in (context.get("triggering_asset_events") or {}).values():
        extras += [dict(getattr(e, "extra", None) or {}) for e in events]
    conf = getattr(context.get("dag_run"), "conf", None) or {}
    return messages.bodies_from_asset_events(extras) + messages.bodies_from_conf(conf)


def account_scopes(params: AuditParams) -> dict[str, str]:
    """Audited account id → the scope account (include/aws/accounts.py): "" for aws_default's own account, the
    role ARN for an assumed one. An event from any other account is not this deployment's to check."""
    from include.aws.accounts import account_label, is_role_arn
    from include.aws.clients import default_account_id

    scopes = {account_label(a): a for a in params.accounts if is_role_arn(a)}
    if params.include_default_account or not params.accounts:
        scopes[default_account_id()] = ""
    return scopes


def stream_owners(store, days: list[str]):
    """owners(event) for include/watch/plan.fold: the instances whose latest observation (of `days`) names the
    event's (group, stream) as a stream their agent ships audit.log to — the daily run's own claims. A stream
    that names an instance id never gets here (the event already names its host)."""
    claims: dict[tuple[str, str], set[str]] = {}
    loaded = False

    def owners(event: WatchEvent) -> list[str]:
        nonlocal loaded
        if not loaded:
            for day in days:
                for item in store.day_items(day, fields=["stream_names", "stream"]):
                    for name in [*item.stream_names, getattr(item, "stream", None) or []]:
                        if len(name) == 2:
                            claims.setdefault((name[0], name[1]), set()).add(item.instance_id)
            loaded = True
        return sorted(claims.get((event.log_group, event.log_stream), ()))

    return owners


def already_observed(store, day: str, rechecks: list[Recheck]) -> dict[str, str]:
    """Hosts whose current observation of `day` started after all their events (and after a launch's boot):
    a re-check pending or just done already answers them (they fold into it)."""
    # A tamper record is never folded by time: its timestamp is the host's, and a host that can backdate it could
    # hide it behind an earlier observation. A run of tamper records alone reads nothing here.
    foldable = [r for r in rechecks if r.look == 1 and r.trigger != TAMPER]
    current_of = {it.instance_id: it for it in store.items_by_id(day, [r.instance_id for r in foldable],
                                                                 consistent=True)} if foldable else {}
    done = {}
    for r in foldable:
        current = current_of.get(r.instance_id)
        after = max(filter(None, (parse_moment(r.last_at or r.first_at), parse_moment(r.not_before))), default=None)
        checked = parse_moment(getattr(current, "checked_at", "") or "")
        if after and checked and checked > after:
            done[r.instance_id] = current.checked_at
    return done


def collect(params: AuditParams, bodies: list[tuple[Any, str]], run_id: str, now: datetime | None = None,
            queue_client=None) -> WatchPlan:
    from dataclasses import replace

    from include.aws.clients import default_region
    from include.watch import messages, plan

    now = now or utc_now()
    day = now.astimezone(timezone.utc).strftime("%Y-%m-%d")
    yesterday = (now - timedelta(days=1)).astimezone(timezone.utc).strftime("%Y-%m-%d")
    store = evidence_store(params)
    events, rejected, own = [], [], []
    for body, message_id in bodies:
        if (due := read_due(body)) is not None:
            # Its account is a scope this deployment audits (never a role ARN the message names), or refused.
            if due.account and due.account not in params.accounts:
                rejected.append(Rejected(f"re-check due in an account not audited here: {due.account[:80]}",
                                         due.instance_id, message_id))
            else:
                own.append(due)
            continue
        read, refused = messages.read(body, default_region=default_region(), message_id=message_id)
        events += read
        rejected += refused
    scopes = account_scopes(params) if events else {}
    accepted = []
    for e in events:
        if e.account and e.account not in scopes:
            rejected.append(Rejected(f"account {e.account} is not audited here", e.instance_id, e.message_id))
        else:
            accepted.append(e)
    folded, refused = plan.fold(accepted, stream_owners(store, [day, yesterday]),
                                launch_grace_minutes=params.launch_grace_minutes)
    rejected += refused
    rechecks = [r if not r.account else _with_scope(r, scopes) for r in folded] + own
    # Expected noise (a stopped instance, a CONTROL_MESSAGE, a log line that is no tamper record) is counted;
    # the rest is logged too: junk, foreign messages, a stream no host owns.
    reasons = Counter(("ignored: " if r.ignored else "") + r.reason.split(":")[0] for r in rejected)
    for r in [r for r in rejected if not r.ignored][:50]:
        log.warning("message %s not used: %s %s", r.message_id, r.reason, r.excerpt[:200])
    done = already_observed(store, day, rechecks)
    rechecks = [r for r in rechecks if r.instance_id not in done]
    later = [r for r in rechecks if (parse_moment(r.not_before) or now) > now]
    due = [r for r in rechecks if r not in later]
    url = queue_url()
    if later and url:
        send_later(queue_client or _sqs(), url, later, now)
        log.info("%d launch(es) back on the queue until booted: %s", len(later), [r.instance_id for r in later])
    elif later:  # a replay without a queue: this run waits for them (wait_for_boot)
        due += later
        later = []
    watch = WatchPlan(day, run_id, due=due, deferred=later, folded=[f"{i}: already observed at {t}" for i, t in done.items()],
                      messages=len(bodies), events=len(events), rejected=dict(reasons))
    return replace(watch, wait_until=wait_until(watch))


def _with_scope(r: Recheck, scopes: Mapping[str, str]) -> Recheck:
    from dataclasses import replace

    return replace(r, account=scopes.get(r.account, ""))


def wait_until(watch: WatchPlan) -> str:
    """When the run's re-checks may start: the latest not_before of a replayed launch, else now."""
    moments = [m for r in watch.due if (m := parse_moment(r.not_before))]
    return iso(max(moments)) if moments else iso(utc_now())


def alert_at_once(params: AuditParams, watch: WatchPlan) -> str:
    """Rule deletions and audit_enabled=0 alert before any re-check (include/notify/tamper.py)."""
    from include.notify import tamper
    from include.notify.event_store import SecurityEventStore

    if not any(r.tamper for r in watch.due):
        return "no tamper record to alert at once"
    store = evidence_store(params)
    return tamper.alert_at_once(SecurityEventStore(store), watch.due, day=watch.audit_date, run_id=watch.run_id,
                                params=params, active_fixes=tamper.remediation_lookup(store, watch.due))


# ------------------------------------------------------------------ plan: the daily path's batches

def reason(r: Recheck) -> str:
    """Why the host is checked, as its item's `trigger_detail` says it."""
    what = {"launch": "state running", "silence": "audit stream silent"}.get(r.trigger, ", ".join(r.tamper))
    record = f": {r.records[0][:300]}" if r.records else ""
    count = f" ({r.events} events)" if r.events > 1 else ""
    look = " (second look after tamper_grace_minutes)" if r.look > 1 else ""
    return f"{r.trigger} at {r.first_at}{count}{look}: {what}{record}"[:600]


def plan(params: AuditParams, watch: WatchPlan) -> list:
    """The due re-checks as the daily run's batches: one set per trigger, so every item carries its own."""
    from dataclasses import replace

    from include.aws.accounts import scope_key
    from include.fleet import batching

    batches = []
    by_trigger: dict[str, list[Recheck]] = {}
    for r in watch.due:
        by_trigger.setdefault(r.trigger, []).append(r)
    for trigger, rechecks in sorted(by_trigger.items()):
        scopes: dict[str, list[str]] = {}
        for r in rechecks:
            scopes.setdefault(scope_key(r.account, r.region), []).append(r.instance_id)
        why = {r.instance_id: reason(r) for r in rechecks}
        for b in batching.plan_batches({k: sorted(set(v)) for k, v in scopes.items()}, params.batch_size):
            batches.append(replace(b, audit_date=watch.audit_date, run_id=watch.run_id, trigger=trigger,
                                   label=f"{trigger} {b.label}", reasons={i: why[i] for i in b.instance_ids}))
    log.info("%d re-checks in %d batches", len(watch.due), len(batches))
    return batches


# ------------------------------------------------------------------ finish

def finish(params: AuditParams, watch: WatchPlan, results: list, final: bool = False) -> dict[str, Any]:
    """After the re-checks: the day resealed (its summary and digest follow), then the alerts the verdicts
    call for. Returns when the second look is due (and for whom) — the clean stops that did not pass."""
    from include.notify import tamper
    from include.notify.event_store import SecurityEventStore
    from include.tasks.audit import reseal_day

    rechecks = watch.due
    if not rechecks:
        return {"second_look": [], "at": iso(utc_now()), "said": "nothing re-checked"}
    store = evidence_store(params)
    ids = [r.instance_id for r in rechecks]
    trigger = rechecks[0].trigger if len({r.trigger for r in rechecks}) == 1 else "tamper"
    reseal_day(store, watch.audit_date, watch.run_id, trigger, params.ttl_days, hosts=ids)
    items = [it for it in store.items_by_id(watch.audit_date, ids, consistent=True) if it.run_id == watch.run_id]
    by_id = {it.instance_id: it for it in items}
    # A clean stop that did not pass is looked at again after tamper_grace_minutes: its alert waits for that look.
    # Every other host's alerts go out now (final).
    again = [] if final else [r for r in rechecks
                              if tamper.needs_second_look(r, by_id.get(r.instance_id), params.tamper_grace_minutes)]
    waiting = {r.instance_id for r in again}
    said = []
    for rs, last in (([r for r in rechecks if r.instance_id not in waiting], True), (again, False)):
        if rs:
            said.append(tamper.after_recheck(
                SecurityEventStore(store), rs, [by_id[r.instance_id] for r in rs if r.instance_id in by_id],
                day=watch.audit_date, run_id=watch.run_id, params=params,
                active_fixes=tamper.remediation_lookup(store, rs), final=last))
    said = "; ".join(said)
    at = max([parse_moment(r.first_at) + timedelta(minutes=params.tamper_grace_minutes) for r in again
              if parse_moment(r.first_at)], default=utc_now())
    failed = [r for r in results or [] if getattr(r, "error", "")]
    log.info("re-checked %d hosts (%s); %s; second look for %d at %s", len(items),
             dict(Counter(it.status for it in items)), said, len(again), iso(at))
    if failed:
        log.warning("%d batch(es) failed: %s", len(failed), [r.error for r in failed])
    return {"second_look": [r.to_xcom() for r in again], "at": iso(at), "said": said}


def second_look(params: AuditParams, watch: WatchPlan, looked: Mapping[str, Any]) -> str:
    """The clean stops that had not passed, checked again after tamper_grace_minutes (the same path): their
    alert, if any, goes out now with this verdict."""
    from dataclasses import replace

    from include.verify.result import BatchResult

    again = [replace(Recheck.from_xcom(r), look=2) for r in looked.get("second_look") or []]
    if not again:
        return "no second look needed"
    now = utc_now()
    watch = replace(watch, due=again, audit_date=now.strftime("%Y-%m-%d"))
    results: list[BatchResult] = [verify_now(params, b) for b in plan(params, watch)]
    return finish(params, watch, results, final=True)["said"]


def verify_now(params: AuditParams, batch) -> Any:
    from include.tasks import audit

    return audit.verify(params, batch, final_try=True)


# ------------------------------------------------------------------ clients

def evidence_store(params: AuditParams):
    from include.tasks.audit import evidence_store as store

    return store(params)


def _sqs(url: str = ""):
    from include.aws.clients import sqs_client

    return sqs_client(url or queue_url())


# ------------------------------------------------------------------ the silence sweep (dags/ec2_audit_watch.py)

def watched_streams(store, now: datetime) -> list:
    """The hosts the sweep watches: those whose latest current item of today or yesterday is COMPLIANT, each with
    the stream its log_stream_fresh PASS rested on (the item's `stream`)."""
    from include.watch.sweep import WatchedStream

    latest: dict[str, Any] = {}
    for day in ((now - timedelta(days=1)).strftime("%Y-%m-%d"), now.strftime("%Y-%m-%d")):  # today's win
        for item in store.day_items(day, fields=["status", "stream", "region", "account_id"]):
            latest[item.instance_id] = item
    return [WatchedStream(instance_id=i, region=it.region, log_group=it.stream[0], log_stream=it.stream[1],
                          account=it.account_id)
            for i, it in sorted(latest.items()) if it.status == "COMPLIANT" and len(it.stream or []) == 2]


def sweep(params: AuditParams, now: datetime | None = None, queue_client=None) -> dict[str, Any]:
    """AWS-side only, no host contacted: the watched hosts' groups listed newest first (DescribeLogStreams,
    stopping at the first stream older than stream_max_age_minutes), and a silence message on the queue for each
    host none of whose streams is fresh (include/watch/sweep.py). The watch re-checks them with the canary."""
    from include.logs.stream_index import list_fresh
    from include.watch import sweep as pure

    now = now or utc_now()
    store = evidence_store(params)
    hosts = watched_streams(store, now)
    scopes = account_scopes(params) if hosts else {}
    cutoff_ms = int(now.timestamp() * 1000) - params.stream_max_age_minutes * 60_000
    calls = Counter()
    fresh = {}
    for account, region, group in sorted({(h.account, h.region, h.log_group) for h in hosts}):
        if account and account not in scopes:
            continue  # a host of an account this deployment no longer audits: undecided, never silent
        client = logs_client(region, scopes.get(account, ""))

        def count(key=(account, region, group)):
            calls[key] += 1

        fresh[(account, region, group)] = list_fresh(client, group, cutoff_ms, before_call=count)
    found = pure.silent(hosts, fresh, now=now, stream_max_age_minutes=params.stream_max_age_minutes)
    url = queue_url()
    if found.messages and url:
        client = queue_client or _sqs(url)
        for start in range(0, len(found.messages), 10):  # SendMessageBatch takes 10 entries
            entries = [{"Id": str(n), "MessageBody": json.dumps(m)}
                       for n, m in enumerate(found.messages[start:start + 10])]
            failed = client.send_message_batch(QueueUrl=url, Entries=entries).get("Failed") or []
            if failed:
                raise RuntimeError(f"the events queue refused {len(failed)} silence message(s): {failed[:3]}")
    said = (f"{len(hosts)} hosts watched in {len(fresh)} log group(s), {sum(calls.values())} DescribeLogStreams "
            f"calls; {len(found.messages)} silent{' (queued)' if url else ' (no queue: not sent)'}, "
            f"{len(found.undecided)} undecided")
    log.info(said)
    return {"said": said, "silent": [m["detail"]["instance-id"] for m in found.messages],
            "messages": found.messages if not url else [], "calls": sum(calls.values())}


def logs_client(region: str, account: str = ""):
    from include.tasks.audit import logs_client as client

    return client(region, account)


def params_for(params: AuditParams, trigger: str) -> AuditParams:
    """A silent stream's host is re-checked with the canary: a quiet but healthy host then proves delivery instead
    of failing on an old stream (the audit's own SSM document carries no canary: then as the run says)."""
    from dataclasses import replace

    if trigger == SILENCE and not params.ssm_document:
        return replace(params, canary=True)
    return params
