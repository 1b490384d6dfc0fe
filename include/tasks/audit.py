"""The Airflow-facing steps of the daily audit. The DAG file wires these; the logic lives in pure modules.

Each step takes the run's params and a few context values and returns only small JSON-able things (ids,
batch descriptors, counts, file paths): per-host output never travels through XCom.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from include import __version__
from include.core.clock import utc_now
from include.core.status import Status
from include.evidence.records import EvidenceItem
from include.settings.params import SMTP_CONN_ID, SSH_CONN_ID, AuditParams, audit_day, resolve_mode

# Heavier modules (boto3, asyncssh, pandas) are imported inside the steps: the DAG processor parses this
# file often and should not pay for them.
if TYPE_CHECKING:  # the typed records the steps pass through XCom (each with to_xcom / from_xcom)
    from include.evidence.sealed import Sealed
    from include.exports.exported import Exported
    from include.fleet.batching import Batch
    from include.fleet.inventory import Inventory, RunFacts
    from include.report.built import Built
    from include.verify.result import BatchResult

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ connections → clients (include/aws/clients.py)

def evidence_store(params: AuditParams):
    from include.evidence.store import EvidenceStore

    return EvidenceStore.open(params.evidence_table)


def evidence_s3_client():
    """S3 of the evidence account (`aws_default`): the `evidence_bucket`, which only the worker's role writes."""
    from include.aws.clients import s3_client

    return s3_client(None)


def ec2_client(region: str, account: str = ""):
    from include.aws.clients import ec2_client as client

    return client(region, account)


def logs_client(region: str, account: str = ""):
    from include.aws.clients import logs_client as client

    return client(region, account)


def transport_clients(params: AuditParams, region: str, account: str = "") -> dict[str, Any]:
    """The AWS clients the run's transport needs for one batch (include/reach/choice.py)."""
    from include.reach import choice

    return choice.transport_clients(params, region, account)


def ssh_connection(required: bool):
    """The `ec2_audit_ssh` connection's fields for include/reach/choice.py (None: there is none, and the run's
    transport does without it)."""
    from airflow.exceptions import AirflowNotFoundException
    from airflow.sdk import BaseHook

    from include.reach.choice import SshConnection

    try:
        conn = BaseHook.get_connection(SSH_CONN_ID)
    except AirflowNotFoundException:
        if required:
            raise
        return None
    return SshConnection(login=conn.login, port=conn.port, extra=conn.extra_dejson)


def ssh_settings(params: AuditParams):
    """The run's SSH settings, from the `ec2_audit_ssh` connection as the transport needs it (include/reach/choice.py)."""
    from include.reach import choice

    return choice.ssh_settings(params, ssh_connection)


def ssm_settings(params: AuditParams):
    """SSM Run Command's settings from the run's params (None unless the transport is ssm or auto)."""
    from include.reach import choice

    return choice.ssm_settings(params)


# ------------------------------------------------------------------ steps

def run_facts(context: dict[str, Any]) -> RunFacts:
    """Audit day, run id and resolved mode of the current run."""
    dag_run = context["dag_run"]
    from include.fleet.inventory import RunFacts, trigger_of
    from include.tasks.params import audit_params

    params = audit_params(dict(context["params"]))
    logical = context.get("logical_date") or getattr(dag_run, "logical_date", None)
    run_after = getattr(dag_run, "run_after", None)
    # The wall clock, not dag_run.start_date: `dag.test()` sets start_date to the logical date, which
    # would make every old day look "live".
    now = utc_now()
    return RunFacts(audit_date=audit_day(logical, run_after), run_id=dag_run.run_id,
                    mode=resolve_mode(params.mode, logical, now),
                    trigger=trigger_of(getattr(dag_run, "run_type", None), params.instance_ids,
                                       getattr(dag_run, "triggered_by", None)))


def discover(params: AuditParams, facts: RunFacts) -> Inventory:
    from include.aws.accounts import account_label, audit_scopes, scope_key
    from include.fleet import discovery
    from include.fleet.inventory import Inventory

    if facts.mode == "rebuild":
        log.info("rebuild mode for %s: no discovery, no SSH", facts.audit_date)
        return Inventory(facts.audit_date, facts.run_id, facts.mode, trigger=facts.trigger)
    if params.kms_key_id:  # a key that cannot sign the day's seal fails the run here, naming kms_key_id
        from include.evidence.signing import open_signer

        open_signer(params.kms_key_id)
    if params.create_table:
        evidence_store(params).ensure_tables()
    if params.evidence_bucket:  # every host's raw output goes there: one that cannot be read fails the run now
        from include.evidence.raw_store import bucket_problem

        if problem := bucket_problem(evidence_s3_client(), params.evidence_bucket):
            raise ValueError(problem)
    from include.aws.clients import default_region

    regions = params.regions or [default_region()]
    instances, states, failures, labels = {}, {}, {}, {}
    for account, region in audit_scopes(params.accounts, params.include_default_account, regions):
        key, where = scope_key(account, region), f"{account_label(account)} {region}".strip()
        labels[key] = where
        try:
            inventory = discovery.discover_region(ec2_client(region, account), region, params.tag_filters,
                                                  params.instance_ids)
        except Exception as exc:  # noqa: BLE001 - collected, then raised for all accounts and regions at once
            failures[where] = f"{type(exc).__name__}: {exc}"[:300]
            continue
        instances[key], states[key] = inventory.running, inventory.states
        log.info("%s: %d running, states %s", where, len(inventory.running), inventory.states)
    if failures:
        # A smaller fleet must never read as a complete one: fail the task (it retries), naming every region.
        raise RuntimeError("discovery failed, no report from a partial fleet: "
                           + "; ".join(f"{r}: {e}" for r, e in failures.items()))
    from include.reach.choice import inline_read_problem

    # A fleet SSM would read one GetCommandInvocation a host, past what that API's rate allows: fail now, naming
    # the param, not hours later in throttled batches (docs/PERFORMANCE.md, issue 29).
    if problem := inline_read_problem(params.transport, params.ssm_output_bucket,
                                      {labels.get(k, k): len(ids) for k, ids in instances.items()}):
        raise ValueError(problem)
    running = {i for ids in instances.values() for i in ids}
    not_found = sorted(set(params.instance_ids) - running)
    if not_found:  # the rest are checked; these are named here, in the Inventory and in the report
        log.warning("%s", requested_not_found(not_found))
    return Inventory(facts.audit_date, facts.run_id, facts.mode, instances=instances, states=states,
                     discovered=sum(len(v) for v in instances.values()), trigger=facts.trigger, not_found=not_found)


def plan(params: AuditParams, inventory: Inventory) -> list[Batch]:
    from dataclasses import replace

    from include.fleet import batching
    from include.settings import queues

    queue_of = None
    if params.queue_map:  # hosts → the worker queue inside their VPC: needs each one's owner and VpcId
        from include.aws.accounts import parse_scope
        from include.fleet import discovery

        queue_of = {}
        for scope, ids in inventory.instances.items():
            account, region = parse_scope(scope)
            placed = discovery.placements(ec2_client(region, account), ids, params.tag_filters) if ids else {}
            queue_of.update(queues.assign(params.queue_map, placed, ids))
    # Each mapped task needs the run facts (and its queue), not the whole inventory.
    batches = [replace(b, audit_date=inventory.audit_date, run_id=inventory.run_id, trigger=inventory.trigger)
               for b in batching.plan_batches(inventory.instances, params.batch_size, queue_of=queue_of)]
    # A batch for a queue no verify task serves would never be checked: refuse the plan (a coverage gap otherwise).
    if unserved := queues.unknown_queues(batches, queues.deployment_queues()):
        raise ValueError(f"param queue_map: queue(s) {', '.join(unserved)} not in {queues.ENV} of this worker")
    log.info("%d hosts in %d batches%s", inventory.discovered, len(batches),
             f" on queues {dict(sorted(Counter(b.queue for b in batches).items()))}" if queue_of is not None else "")
    return batches


def verify(params: AuditParams, b: Batch, final_try: bool = False) -> BatchResult:
    """Verify one batch. On the last retry a failure is returned, not raised, so the day's report is still
    built — with this batch's hosts as coverage gaps — and `confirm_complete` then fails the run. That holds
    for the task's execution_timeout too: Airflow raises AirflowTaskTimeout, a BaseException, from its SIGALRM
    handler wherever the batch is; what the batch stored by then stays stored (verify_batch writes it in a
    `finally`) and store_summary counts it from DynamoDB, the rest are gaps."""
    from airflow.sdk.exceptions import AirflowTaskTimeout

    from include.report import staging
    from include.verify.batch import RunContext, verify_batch
    from include.verify.result import BatchResult

    def stage(items: list[dict]) -> None:  # what this try stored, for build_report (include/report/staging.py)
        staging.write_batch(params.resolved_report_dir(), b.audit_date, b.run_id, b.label or b.region, items)

    try:
        ctx = RunContext(b.audit_date, b.run_id, params, ssh_settings(params), ssm_settings(params), b.trigger,
                         reasons=b.reasons)
        result = verify_batch(b, ctx, ec2_client(b.region, b.account), logs_client(b.region, b.account),
                              evidence_store(params), **transport_clients(params, b.region, b.account), stage=stage)
    except (Exception, AirflowTaskTimeout) as exc:
        if not final_try:
            raise
        log.exception("%s failed after all retries", b.label)
        return BatchResult.failure(b.label or b.region, b.region, len(b.instance_ids), f"{type(exc).__name__}: {exc}")
    import resource

    # The bench reads this line: the task process's own high-water mark (ru_maxrss is in KiB on Linux).
    log.info("%s: %s; peak RSS %d MB", result.label, result.counts,
             resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
    return result


def store_summary(params: AuditParams, inventory: Inventory, results: list[BatchResult]) -> Sealed:
    """Seal the day: a run-summary item computed from the evidence actually stored (not from XCom).

    The summary describes the DAY, not this run: the dashboard and a rebuild read all of the day's items, so
    it counts all of them (a same-day partial rerun, e.g. with `tag_filters`, keeps the hosts earlier runs
    checked), and `discovered` is the union of this run's discovered ids, the ids stored earlier that day
    and the earlier summary's missing evidence — so coverage never exceeds 100 %."""
    from include.core.clock import iso
    from include.core.scoring import fleet_summary
    from include.evidence.records import RunSummary
    from include.evidence.sealed import Sealed

    facts = inventory.facts
    if facts.mode == "rebuild":
        return Sealed(facts.audit_date, facts.run_id, facts.mode)
    from include.evidence import digest as day_digest
    from include.verify import name_claims

    store = evidence_store(params)
    earlier = store.run_summary(facts.audit_date) or RunSummary()
    items = store.day_items(facts.audit_date, fields=["status", day_digest.ITEM_HASH, *name_claims.FIELDS])
    items = correct_name_claims(params, store, items, facts)
    # The day as now stored, sealed before its summary names the seal: a failure fails the task (retried).
    sealed = seal_day(params, store, facts.audit_date, facts.run_id, facts.trigger or "manual")  # unknown: never "schedule"
    expected = {i for ids in inventory.instances.values() for i in ids}
    recorded_now = {it.instance_id for it in items if it.run_id == facts.run_id}
    unrecorded = sorted(expected - recorded_now)
    gone = sum(r.no_longer_running for r in results or [])
    if len(unrecorded) > gone:  # a host neither recorded nor stopped since discovery is a pipeline bug
        log.warning("%d discovered instances have no evidence: %s", len(unrecorded), unrecorded[:20])
    recorded = {it.instance_id for it in items}
    discovered = expected | recorded | set(earlier.missing_evidence)
    missing = sorted(discovered - recorded)
    from_earlier = len(recorded - recorded_now)
    if from_earlier:
        log.info("%s: %d of %d items come from earlier runs of the day", facts.audit_date, from_earlier, len(items))
    summary = fleet_summary([it.status for it in items], len(discovered))
    not_running = Counter()
    for region_states in inventory.states.values():
        for state, n in region_states.items():
            if state != "running":
                not_running[state] += n
    if params.instance_ids:  # a targeted run listed only the hosts it was asked about: the day's count stands
        not_running = Counter(earlier.not_running)
    store.put_summary(facts.audit_date, RunSummary(
        run_id=facts.run_id, mode=facts.mode, generated_at=iso(utc_now()),
        discovered=summary.discovered, checked=summary.checked, status_counts=summary.counts,
        compliance_pct=summary.compliance_pct, coverage_pct=summary.coverage_pct,
        not_running=dict(not_running), missing_evidence=missing[:1000], checked_by_earlier_runs=from_earlier,
        regions=sorted(set(inventory.instances) | set(earlier.regions)), code_version=__version__,
        failed_batches=[{"label": r.label, "error": r.error} for r in results or [] if r.failed],
        manifest_sha256=sealed.manifest_sha256, previous_manifest_sha256=sealed.previous_manifest_sha256,
        seal_seq=sealed.seq,
    ), params.ttl_days)
    # The read above, kept: the next day's drift and this day's report use it instead of reading the day again.
    store.put_digest(facts.audit_date, day_digest.build(items), params.ttl_days)
    return Sealed(facts.audit_date, facts.run_id, facts.mode, checked=summary.checked, discovered=summary.discovered,
                  not_found=list(inventory.not_found))


def seal_day(params: AuditParams, store, day: str, run_id: str, trigger: str):
    """Seal `day` as stored now (include/evidence/seals.py), signed with `kms_key_id` when set: the store step,
    and the remediation's re-check for its day (trigger "remediation"). Returns the SealRecord; raises on any
    failure (the task's retry seals the day), never leaves the day silently unsealed."""
    from include.evidence import seals

    return seals.seal(store, day, run_id, trigger, params.ttl_days, params.kms_key_id or None)


def reseal_day(store, day: str, run_id: str, trigger: str, ttl_days: int, hosts=()):
    """A check outside the day's own run (a remediation's re-check, an event-driven one) added observations to
    `day`: seal the day again and bring its run summary and digest in step with its current items — the
    counts recomputed, the manifest the new seal's (contract: the summary carries the latest seal). Signed
    with the key the chain's latest seal names, so a signed chain stays signed. `hosts`: the ids just
    checked (the day index may not list them yet). Returns the SealRecord."""
    from dataclasses import replace

    from include.core.clock import iso
    from include.core.scoring import fleet_summary
    from include.evidence import digest as day_digest
    from include.evidence import seals
    from include.evidence.records import RunSummary

    sealed = seals.seal(store, day, run_id, trigger, ttl_days, seals.SealStore(store).signing_key(), hosts)
    earlier = store.run_summary(day)
    items = store.day_items(day, fields=["status", day_digest.ITEM_HASH])
    recorded = {it.instance_id for it in items}
    missing = sorted(set(earlier.missing_evidence if earlier else []) - recorded)
    summary = fleet_summary([it.status for it in items], len(recorded) + len(missing))
    base = earlier or RunSummary(run_id=run_id, mode="live", code_version=__version__)
    store.put_summary(day, replace(
        base, generated_at=iso(utc_now()), discovered=summary.discovered, checked=summary.checked,
        status_counts=summary.counts, compliance_pct=summary.compliance_pct, coverage_pct=summary.coverage_pct,
        missing_evidence=missing[:1000], manifest_sha256=sealed.manifest_sha256,
        previous_manifest_sha256=sealed.previous_manifest_sha256, seal_seq=sealed.seq), ttl_days)
    store.put_digest(day, day_digest.build(items), ttl_days)
    return sealed


def correct_name_claims(params: AuditParams, store, items: list[EvidenceItem], facts: RunFacts,
                        ) -> list[EvidenceItem]:
    """Decided once per run, after every batch: this run's hosts whose stream is theirs only by a hostname or IP
    that another instance of the day also names fail log_stream_fresh (include/verify/name_claims.py). Returns the
    items as read, with those corrected."""
    from include.verify import name_claims
    from include.verify.profiles import load_profile
    from include.verify.waivers import load_waivers

    return name_claims.settle(store, items, facts.audit_date, facts.run_id, load_profile(params.profile),
                              load_waivers(params.waivers_file), utc_now())


def day_items_for_report(store, params: AuditParams, day: str, run_id: str, mode: str) -> list[EvidenceItem]:
    """The day's items, as the summary, the dashboard and a later rebuild count them: the ones the verify
    batches staged when the day's digest vouches for them (same run, status and item hash), the rest from
    DynamoDB by key; without a digest (a day sealed before digests, a rebuild) the day's index is read.
    Every host the digest names is in the answer, or this raises (the task is retried): a report never lacks
    a host silently (keys left unprocessed raise in the read itself)."""
    from include.report import staging

    digest = store.digest(day) if mode != "rebuild" else None
    if digest is None:
        return store.day_items(day)
    found, missing = staging.matching(digest, staging.read(params.resolved_report_dir(), day, run_id))
    log.info("%s: %d items from the batches' staging, %d read from DynamoDB", day, len(found), len(missing))
    # A staged copy is read as the record it vouches for (its hash was checked on the dict as written).
    items = [EvidenceItem.from_item(it) for it in found] + store.items_by_id(day, missing)
    if lacking := sorted(set(digest) - {it.instance_id for it in items}):
        raise RuntimeError(f"{day}: {len(lacking)} host(s) named by the day's digest have no item in "
                           f"{store.table_name}: {', '.join(lacking[:20])}; no report without them")
    return sorted(items, key=lambda it: it.instance_id)


def requested_not_found(ids: list[str]) -> str:
    """The report's (and the run log's) line for a targeted run's ids not found running."""
    return "Requested but not running/found: " + ", ".join(ids)


def previous_statuses(store, previous_day: str | None) -> list[EvidenceItem]:
    """The previous audit day's statuses for drift: its digest, else its items' statuses."""
    if not previous_day:
        return []
    digest = store.digest(previous_day)
    if digest is None:
        return store.day_items(previous_day, fields=["status"])
    return [EvidenceItem(i, previous_day, status=e.status) for i, e in digest.items()]


def build(params: AuditParams, sealed: Sealed) -> Built:
    from include.checks.catalogue import check_meta
    from include.core.clock import iso
    from include.evidence.records import RunSummary
    from include.exports import ocsf
    from include.remediation.store import RemediationStore
    from include.report import between_runs, trend
    from include.report import build as report
    from include.report.built import Built
    from include.verify.waivers import load_waivers, waiver_status

    store = evidence_store(params)
    remediation = RemediationStore(store)
    day, run_id, mode = sealed.audit_date, sealed.run_id, sealed.mode
    stored = store.run_summary(day)
    items = day_items_for_report(store, params, day, run_id, mode)
    discovered = stored.discovered if stored else len(items)
    notes: list[str] = []
    if mode == "rebuild":
        notes.append(f"Rebuilt on {iso(utc_now())} from evidence stored by run "
                     f"{stored.run_id if stored else 'unknown'}; no host was contacted.")
        if not items:
            notes.append("No evidence is stored for this day: it is a gap, not a result.")
    elif earlier := sum(it.run_id != run_id for it in items):
        notes.append(f"{earlier} of the {len(items)} hosts in this report were checked by earlier runs of "
                     f"{day}; this run ({run_id}) checked {len(items) - earlier}.")
    if sealed.not_found:  # a targeted run: what it was asked to check and could not find running
        notes.append(requested_not_found(sealed.not_found))
    stored = stored or RunSummary()
    for failed in stored.failed_batches:
        notes.append(f"Verification of {failed['label']} failed after all retries ({failed['error']}): "
                     "its hosts are coverage gaps, not results.")
    previous_day = store.previous_audit_day(day)
    generated_at, meta = utc_now(), check_meta()
    built = report.build_report(
        items, audit_date=day, discovered=discovered, run_id=run_id, mode=mode, generated_at=generated_at,
        check_meta=meta, not_running=stored.not_running,
        notes=notes, previous_day=previous_day,
        previous_items=previous_statuses(store, previous_day),  # drift: statuses
        waivers=waiver_status(load_waivers(params.waivers_file), day),
        gaps=stored.missing_evidence,
        trend_png=trend.chart_for_day(store, day),
        # Beside the verdicts, never in them: what ec2_audit_remediate changed that day, and who approved it.
        remediations=remediation.day_remediations(day), decisions=remediation.decisions(day),
        not_found=sealed.not_found,
        seal=report.Sealing.of(stored),  # the manifest the stored summary names (a rebuild shows the stored one)
        # The day's event-driven checks: its current items (read above) and its versions (projected).
        between_runs=between_runs.checks_between_runs(between_runs.read(store, day, items)))
    paths = report.write_report(built, params.resolved_report_dir(), day, run_id=run_id, mode=mode)
    # OCSF Compliance Findings (class 2003), one per host and check, streamed: for the SIEM (include/exports/ocsf.py).
    paths["ocsf"] = ocsf.write_ocsf(params.resolved_report_dir(), day,
                                    ocsf.iter_ocsf_events(items, meta, generated_at))
    s = built.summary
    log.info("%s: compliance %s%%, %d checked of %d, report %s", day, s.compliance_pct, s.checked, s.discovered, paths)
    if mode != "rebuild":
        from include.report import staging

        staging.clear(params.resolved_report_dir(), day, run_id)
    return Built(day, run_id, mode, subject=built.subject, paths=paths, compliance_pct=s.compliance_pct,
                 counts=s.counts, checked=s.checked, discovered=s.discovered,
                 failed_batches=len(stored.failed_batches) if mode != "rebuild" else 0)


def export_findings(params: AuditParams, built: Built, inventory: Inventory) -> Exported:
    """The day's findings to AWS Security Hub (`securityhub`), one import per audited account, in the
    connection's region (the hub that aggregates). Live runs only: a backfill of an old day must not turn
    today's findings back. Only what this run discovered is resolved or archived (`inventory`: its regions,
    its running instances, and whether tag_filters / instance_ids narrowed the listing). A refused permission
    or findings still failing fail the task, by name."""
    from include.aws.accounts import audit_scopes
    from include.aws.clients import default_region, securityhub_client
    from include.checks.catalogue import check_meta
    from include.exports.exported import Exported
    from include.exports.securityhub import RunScope, export_day, run_scopes

    if not params.securityhub:
        return Exported(skipped="securityhub off")
    if built.mode == "rebuild":
        return Exported(skipped="rebuild of stored evidence: Security Hub keeps today's state")
    store = evidence_store(params)
    day, region = built.audit_date, default_region()
    items, summary = store.day_items(day), store.run_summary(day)
    missing, meta = (summary.missing_evidence if summary else []), check_meta()
    narrowed = bool(params.tag_filters) or bool(params.instance_ids)
    scopes = run_scopes(inventory.instances, narrowed)
    results = {}
    for account, _ in audit_scopes(params.accounts, params.include_default_account, [region]):
        client, account_id = securityhub_client(region, account)
        results[account_id] = export_day(client, items, meta, account_id, region, utc_now(),
                                         scope=scopes.get(account, RunScope()), missing_evidence=missing)
        log.info("Security Hub %s %s: %s", account_id, region, results[account_id])
    return Exported(accounts=results)


def confirm_complete(built: Built) -> str:
    """The last step: a run whose report has gaps from failed batches is a failed run (after the email)."""
    if built.failed_batches:
        raise RuntimeError(f"{built.failed_batches} verify batch(es) failed after all retries; the report for "
                           f"{built.audit_date} was sent with their hosts as coverage gaps")
    return f"{built.audit_date}: every discovered host has evidence"


def alert(params: AuditParams, built: Built) -> str:
    """Immediate alerts, separate from the report; live runs only: security events first
    (include/notify/security_events.py), then compliance alerts (include/notify/alerts.py). Every channel of both is tried,
    then the task fails naming each one that failed (a retry resends only what a channel missed)."""
    from include.notify import channels

    if built.mode == "rebuild":
        return "rebuild of stored evidence: history does not alert"
    security = security_alert(params, built)
    text, results = compliance_alert(params, built)
    failed = {f"security events: {k}": v for k, v in security.results.items() if not v.get("ok")}
    failed.update({f"compliance alert: {k}": v for k, v in results.items() if not v.get("ok")})
    channels.raise_for_failures(failed, f"alerts of {built.audit_date}")
    return f"{security.summary()}; {text}"


def security_alert(params: AuditParams, built: Built):
    """Security events of the hosts this run checked (HOST_KEY_MISMATCH, a watched check that passed and fails
    now), to `alert_recipients` (else `recipients`) and every channel, whatever the fleet's compliance."""
    from include.notify import channels, security_events
    from include.notify import email as notify
    from include.notify.event_store import SecurityEventStore

    store = SecurityEventStore(evidence_store(params))
    day, run_id = built.audit_date, built.run_id
    return security_events.send_security_events(
        store, store.candidates(day, run_id), day=day, run_id=run_id,
        recipients=security_events.recipients_for(params), chans=channels.Channels.from_params(params),
        repeat_days=params.alert_repeat_days, ttl_days=params.ttl_days,
        run_url=notify.run_url("ec2_audit_compliance", run_id), smtp_conn_id=SMTP_CONN_ID)


def compliance_alert(params: AuditParams, built: Built) -> tuple[str, dict[str, dict]]:
    """Compliance alerts (include/notify/alerts.py): email to `alert_recipients`, and Slack / SNS (include/notify/channels.py)
    when their params are set. (what was done, each channel's result); the caller raises for the failed ones."""
    from dataclasses import replace

    from include.checks.catalogue import CATALOGUE
    from include.core.clock import iso
    from include.notify import alerts, channels
    from include.notify import email as notify
    from include.notify.alert_store import AlertState, AlertStateStore

    chans = channels.Channels.from_params(params)
    if not params.alert_recipients and not chans:
        return "no alert_recipients, slack_conn_id or sns_topic_arn: compliance alerts off", {}
    store = evidence_store(params)
    day = built.audit_date
    # Findings come only from failing hosts: read those (filtered server-side), not the whole day.
    items = store.day_items(day, run_id=built.run_id, status=Status.NON_COMPLIANT)
    critical = {c.id for c in CATALOGUE if c.severity == "critical"}
    findings = alerts.current_findings(items, critical, built.compliance_pct, params.alert_threshold_pct)
    alert_states = AlertStateStore(store)
    decision = alerts.decide(findings, alert_states.previous_alert_state(day), day, params.alert_repeat_days)
    earlier = alert_states.alert_state(day) or AlertState()
    already = set(earlier.alerted)  # emailed by an earlier run or try of the day: not repeated
    delivered_before = earlier.delivered  # channel → keys Slack / SNS already got
    names = {it.instance_id: str(it.tags.get("Name", "")) for it in items}
    notice = channels.AlertNotice(day, decision, names, built.compliance_pct,
                                  notify.run_url("ec2_audit_compliance", built.run_id),
                                  built.paths.get("html", ""))
    to_email = replace(decision, alert=[f for f in decision.alert if f.key not in already])
    record = AlertState(run_id=built.run_id, open=decision.state, closed=decision.closed, alerted=sorted(already),
                        generated_at=iso(utc_now()))
    results: dict[str, dict] = {}
    if to_email.alert and params.alert_recipients:
        hint = f"The full report for {day} is in {built.paths.get('html', '')}."
        results["email"] = channels.attempt("email", f"connection {SMTP_CONN_ID!r}", f"compliance alert {day}",
                                            lambda: notify.send_report_email(
                                                conn_id=SMTP_CONN_ID, recipients=params.alert_recipients,
                                                subject=alerts.subject(day, to_email, built.compliance_pct),
                                                html=alerts.render_html(day, to_email, names, hint), attachments=[]))
        if results["email"]["ok"]:
            record = replace(record, alerted=sorted(already | {f.key for f in to_email.alert}),
                             alerted_at=iso(utc_now()))
    results.update(channels.deliver_alert(chans, notice, delivered_before=delivered_before, raise_on_failure=False))
    delivered = channels.delivered_keys(delivered_before, results)
    delivered.pop("email", None)  # the email's keys are `alerted`
    record = replace(record, delivered=delivered)
    alert_states.put_alert_state(day, record, params.ttl_days)  # after the sends: what failed is retried, not lost
    sent = {ch: r.get("sent", len(to_email.alert)) for ch, r in results.items() if r.get("ok")}
    return (f"alerts sent {sent or 'nowhere (nothing new)'}, {len(decision.state)} open finding(s), "
            f"{len(decision.closed)} closed"), results


def run_conf() -> dict[str, Any]:
    """The running task's dag_run.conf: what whoever triggered the run wrote themselves (params also hold the
    DAG's defaults, EC2_AUDIT_PARAMS included)."""
    from airflow.sdk import get_current_context

    return dict(getattr(get_current_context()["dag_run"], "conf", None) or {})


def send(params: AuditParams, built: Built, conf: dict[str, Any] | None = None) -> str:
    """Email the day's report to `recipients`. A targeted run (`instance_ids`: a patch pipeline's check of a few
    hosts) emails it only when its own conf names recipients (`conf`, default the running task's dag_run.conf):
    the deployment's recipients get the daily run's report, not one per patched host."""
    from include.notify import email as notify
    from include.report import storage as report_store

    if not params.recipients:
        return "no recipients: report written, no email sent"
    if params.instance_ids and not (run_conf() if conf is None else conf).get("recipients"):
        return "a targeted run (instance_ids) whose conf names no recipients: report written, no email sent"
    store = evidence_store(params)
    if store.emailed_by(built.audit_date) == built.run_id:
        return "already emailed by this run (task retry): not sending twice"
    # What build_report wrote, read back from report_dir (a local folder or s3://): XCom carries the URLs only.
    paths = built.paths
    html = report_store.read_bytes(paths.get("email_html", paths["html"])).decode("utf-8")
    attachments = [(report_store.name(paths[kind]), report_store.read_bytes(paths[kind]))
                   for kind in ("csv", "trend_png") if kind in paths]
    notify.send_report_email(conn_id=SMTP_CONN_ID, recipients=params.recipients, subject=built.subject,
                             html=html, attachments=attachments)
    store.mark_emailed(built.audit_date, built.run_id)
    return f"emailed {len(params.recipients)} recipients: {built.subject}"
