"""Verify one batch: reach every host, judge it, store its evidence as soon as it is judged.

The batch's flow only: skip what this run recorded, reach (the transports include/reach/choice.py plans),
judge (include/verify/judge.py), settle the canaries, write (include/verify/writer.py). Evidence is flushed
every few hosts, so a worker killed mid-batch loses little, and the retried task skips every host this run
already recorded (keyed by run id), so nothing is checked or stored twice. Every check is stored whatever it is.
"""
from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from include.checks.catalogue import SCRIPT, SCRIPT_WITH_CANARY, CheckOptions
from include.checks.probes import new_tag
from include.checks.rulesets import load_rule_set
from include.core.clock import utc_now
from include.core.host import Host, HostOutcome
from include.core.status import Status
from include.evidence.observation import RawOutput
from include.evidence.raw_store import RawOutputStore
from include.evidence.store import EvidenceStore, instance_item
from include.fleet.batching import Batch
from include.fleet.discovery import hydrate
from include.logs.canary import canary_call_spacing_s
from include.logs.index_store import StreamIndexStore
from include.logs.stream_index import SharedIndex
from include.logs.streams import StreamLookup
from include.reach.choice import BatchTransports
from include.reach.hostkeys import HostKeys, PinGroups, PinStore
from include.reach.ssh import SshSettings
from include.reach.ssm import SsmSettings
from include.settings.params import AuditParams
from include.verify import name_claims
from include.verify.judge import Budget, Judgement, judge_host, settle_canaries
from include.verify.profiles import load_profile
from include.verify.result import BatchResult
from include.verify.waivers import apply_waivers, load_waivers
from include.verify.writer import EvidenceWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunContext:
    audit_date: str
    run_id: str
    params: AuditParams
    ssh: SshSettings | None  # None: no SSH connection (transport ssm, or auto without one)
    ssm: SsmSettings | None = None  # transport ssm and auto
    trigger: str = ""  # what asked for these checks (include/fleet/inventory.py trigger_of, or "remediation")
    reasons: dict[str, str] = field(default_factory=dict)  # instance id → why it is checked (Batch.reasons)


def verify_batch(batch: Batch, ctx: RunContext, ec2_client, logs_client, store: EvidenceStore,
                 eic_client=None, ssm_client=None, s3_client=None,
                 stage: Callable[[list[dict]], object] | None = None,
                 raws: RawOutputStore | None = None) -> BatchResult:
    """Check every host of one batch and store its evidence. Returns only counts (XCom stays small).
    The batch's account-and-region clients: `eic_client` (ec2-instance-connect) for eic and auto without a
    key, `ssm_client` for ssm and auto, `s3_client` for ssm_output_bucket. Every item is stored as an
    observation of `ctx.audit_date` (what it replaces is kept). `stage` receives every item as stored, once, at
    the end (even when the batch fails: include/report/staging.py). `raws` keeps each host's raw output
    (default: the run's `evidence_bucket`, else T_raw beside `store`)."""
    hosts, gone = hydrate(ec2_client, batch.region, list(batch.instance_ids), ctx.params.address)
    run = BatchRun(ctx, store, logs_client, hosts, eic_client, ssm_client, s3_client, keep=stage is not None,
                   raws=raws, batch_of=batch.of)
    todo = run.skip_recorded(hosts)
    linux = run.record_not_applicable(todo)
    try:
        if linux:
            asyncio.run(run.reach(linux))
        run.settle_canaries(canary_call_spacing_s(batch.of))
    finally:
        run.writer.close()  # what was judged is stored even when the batch fails (e.g. its bastion dropped)
        if stage is not None and run.writer.written:
            stage(run.writer.written)
    return BatchResult(batch.label or batch.region, batch.region, len(batch.instance_ids), counts=dict(run.counts),
                       already_recorded=len(hosts) - len(todo), no_longer_running=len(gone),
                       transports=dict(run.reached), api_calls=dict(run.transports.calls))


class BatchRun:
    """One batch's steps and the state they share: the profile, waivers, host keys, the stream lookup (inside
    the judging budget), the canaries still to search, the evidence writer and the counts."""

    def __init__(self, ctx: RunContext, store: EvidenceStore, logs_client, hosts: list[Host],
                 eic_client=None, ssm_client=None, s3_client=None, keep: bool = False,
                 raws: RawOutputStore | None = None, batch_of: int = 1) -> None:
        self.ctx, self.store, self.logs_client = ctx, store, logs_client
        self.reached: Counter[str] = Counter()  # hosts per transport that reached (or tried) them
        self.profile = load_profile(ctx.params.profile)
        self.options = CheckOptions(rule_groups=load_rule_set(ctx.params.rule_set))
        self.waivers = load_waivers(ctx.params.waivers_file)
        self.raws = raws or RawOutputStore.open(store.resource, store.table_name, ctx.params.evidence_bucket)
        self.writer = EvidenceWriter(store, keep=keep, raws=self.raws)
        self.counts: Counter[str] = Counter()
        budget = Budget.for_batch(batch_of)
        # The batch's instance ids are its likely stream names (the default): listed, not looked up one by one;
        # other names are answered from the run's shared listing of the group (include/logs/stream_index.py).
        index = SharedIndex(StreamIndexStore(store), logs_client, ctx.audit_date, ctx.run_id, ctx.params.stream_max_age_minutes,
                            before_call=budget.check)
        self.lookup = StreamLookup(logs_client, likely_names=[h.instance_id for h in hosts], before_call=budget.check,
                                   index=index, may_recheck=budget.may_refine)
        policy, known_hosts = (ctx.ssh.host_key_policy, ctx.ssh.known_hosts) if ctx.ssh else ("strict", None)
        self.keys = HostKeys(policy, PinStore(store.resource, store.table_name),
                             accept=ctx.params.accept_host_keys, run_id=ctx.run_id, known_hosts=known_hosts)
        self.awaiting: list[tuple[Host, HostOutcome, Judgement, RawOutput | None]] = []
        self.since_ms = int(utc_now().timestamp() * 1000) - 60_000  # canaries are searched from here
        self.tag = new_tag()  # framed into every host's script; the canary search looks for it
        self.transports = BatchTransports(ctx.params, ctx.ssh, ctx.ssm, self.tag, eic_client, ssm_client, s3_client)

    def record(self, host: Host, outcome: HostOutcome | None, j: Judgement, raw: RawOutput | None = None) -> bool:
        """Waivers, then the evidence item (and `raw`, the host's output it names); returns whether a flush is due."""
        status, failed, waived = apply_waivers(host, j.status, j.failed, self.waivers, self.ctx.audit_date)
        self.counts[status.value] += 1
        # Decided once per run, after every batch (include/verify/name_claims.py): a name unique only in this batch
        # may be a clone's too. Read before the item is built, so the host's result only goes down from here.
        attributed = name_claims.attributed_by_name(host.instance_id, j.verdicts)
        return self.writer.add(instance_item(
            host=host, outcome=outcome, status=status, failed=failed, verdicts=j.verdicts, detail=j.detail,
            audit_date=self.ctx.audit_date, run_id=self.ctx.run_id, checked_at=utc_now(),
            ttl_days=self.ctx.params.ttl_days, profile=self.profile.name, advisory=j.advisory,
            transport=outcome.transport if outcome else self.ctx.params.transport, waived=waived,
            stream_names=j.claims, attributed=attributed, trigger=self.ctx.trigger,
            trigger_detail=self.ctx.reasons.get(host.instance_id, ""),
            output_ref=self.raws.ref(host.instance_id, self.ctx.audit_date, raw.sha256) if raw else ""), raw)

    def skip_recorded(self, hosts: list[Host]) -> list[Host]:
        """A retried task skips every host its run already stored: nothing is checked or stored twice."""
        already = self.store.recorded_by_run(self.ctx.audit_date, [h.instance_id for h in hosts], self.ctx.run_id)
        if already:
            log.info("retry: %d hosts already recorded by run %s, skipping them", len(already), self.ctx.run_id)
        return [h for h in hosts if h.instance_id not in already]

    def record_not_applicable(self, hosts: list[Host]) -> list[Host]:
        for host in hosts:
            if host.is_windows:
                self.record(host, None, Judgement(Status.NOT_APPLICABLE, [], {},
                                                  "Windows instance: Linux audit checks do not apply"))
        return [h for h in hosts if not h.is_windows]

    async def reach(self, hosts: list[Host]) -> None:
        """Each host through its transport (include/reach/transport.py); all outcomes judged and recorded alike."""
        lock = asyncio.Lock()
        pin_groups = PinGroups(self.keys.store) if self.keys.store is not None else None

        async def on_outcome(host: Host, outcome: HostOutcome) -> None:
            self.reached[outcome.transport] += 1
            if outcome.transport in ("ssh", "eic"):
                # First-sight pin (written with other hosts' in one transaction), accepted rotation, lost race:
                # may make it HOST_KEY_MISMATCH or ERROR. Before judging.
                first = self.keys.first_sight(host, outcome)
                pinned = await pin_groups.pin(first) if first else None
                await asyncio.to_thread(self.keys.settle, host, outcome, pinned)
            judged = await asyncio.to_thread(judge_host, host, outcome, self.lookup, self.ctx.params, utc_now,
                                             self.profile, self.options)
            # What the transport returned (up to its cap) is kept, compressed (off the event loop: up to 1 MiB
            # each), until the writer stores it.
            output = outcome.drop_output()
            raw = await asyncio.to_thread(RawOutput.of, output) if output else None
            if judged.canary is not None:  # stored once the batch's canaries have been searched
                self.awaiting.append((host, outcome, judged, raw))
            elif self.record(host, outcome, judged, raw):
                async with lock:  # one writer at a time: boto3 resources are not thread-safe
                    # Taken once the lock is held: a coroutine cancelled while it waits (the task's timeout
                    # ends the loop) leaves its items pending, and the writer's close() stores them.
                    await asyncio.to_thread(self.writer.write, self.writer.take())

        script = SCRIPT_WITH_CANARY if self.ctx.params.canary else SCRIPT
        plan = await self.transports.plan(hosts, self.keys)
        for host, why in plan.unread:  # a pin that could not be read is never "first use": ERROR, not connected to
            self.record(host, None, Judgement(Status.ERROR, [], {}, why))
        await asyncio.gather(*(transport.run(chosen, script, on_outcome) for transport, chosen in plan.legs if chosen))

    def settle_canaries(self, per_call_s: float = 0.0) -> None:
        if not self.awaiting:
            return
        settle_canaries([j for _, _, j, _ in self.awaiting], self.logs_client, self.tag, self.since_ms,
                        self.ctx.params.canary_wait_seconds, self.profile, per_call_s)
        for host, outcome, judged, raw in self.awaiting:
            self.record(host, outcome, judged, raw)
