"""Verify one batch: SSH fan-out, judge each host, store its evidence as soon as it is judged.

Evidence is flushed every few hosts, so a worker killed mid-batch loses little, and the retried task
skips every host this run already recorded (keyed by run id), so nothing is checked or stored twice.
A host is judged under the run's profile (include/verify/profiles.py); every check is stored whatever it is.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from include.checks import parsers
from include.checks.aws_side import AwsView, HostFacts
from include.checks.catalogue import (
    CANARY_CHECK,
    SCRIPT,
    SCRIPT_WITH_CANARY,
    CheckOptions,
    evaluate_aws_checks,
    evaluate_host_checks,
)
from include.checks.probes import new_tag
from include.checks.rulesets import load_rule_set
from include.checks.sections import split_sections
from include.core.host import Host, HostOutcome
from include.core.scoring import scored
from include.core.status import CheckStatus, Status, Verdict
from include.evidence.store import EvidenceStore, instance_item, utc_now
from include.fleet.batching import Batch
from include.fleet.discovery import hydrate
from include.logs.canary import Canary, find_canaries
from include.logs.stream_index import SharedIndex
from include.logs.streams import StreamLookup
from include.reach.hostkeys import HostKeys, PinStore
from include.reach.ssh import SshSettings
from include.reach.ssm import SsmDenied, SsmSettings, SsmTransport
from include.reach.transport import NoTransport, SshTransport, Transport, split_for_auto
from include.settings.params import AuditParams
from include.verify import name_claims
from include.verify.profiles import Profile, load_profile
from include.verify.waivers import apply_waivers, load_waivers

log = logging.getLogger(__name__)

FLUSH_EVERY = 25
STREAM_CHECK = "cwagent.log_stream_fresh"
# AWS-side judging (stream lookups) of one batch stops asking after this long: the rest are ERROR, not a
# task that outlives its execution_timeout (dags/ec2_audit_compliance.py) on a throttled account.
JUDGE_BUDGET_S = 900.0


@dataclass(frozen=True)
class RunContext:
    audit_date: str
    run_id: str
    params: AuditParams
    ssh: SshSettings | None  # None: no SSH connection (transport ssm, or auto without one)
    ssm: SsmSettings | None = None  # transport ssm and auto


def _identity(host: Host, outputs: dict[str, str]) -> dict[str, str | None]:
    """How the agent resolves its placeholders on this host. amazon-cloudwatch-agent's placeholder util
    (translator/.../util/placeholderUtil.go): {hostname} is the EC2 metadata hostname (the private DNS name; the OS
    hostname only without metadata), {local_hostname} the OS hostname "regardless of ec2 metadata"."""
    reported = parsers.hostname_from(outputs)
    return {"instance_id": host.instance_id, "hostname": host.private_dns or reported,
            "local_hostname": reported, "ip_address": host.private_ip}


def _trusted(host: Host, outputs: dict[str, str]) -> dict[str, str | None]:
    """What EC2 says of the instance, and the hostname the host reports (which counts only when it is specific
    to the host: parsers.own_hostname): the names a stream may carry to count as this host's."""
    return {"instance_id": host.instance_id, "private_ip": host.private_ip, "private_dns": host.private_dns,
            "hostname": parsers.hostname_from(outputs)}


class BudgetExceeded(RuntimeError):
    pass


@dataclass
class Budget:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def check(self) -> None:
        if time.monotonic() - self.started > self.seconds:
            raise BudgetExceeded(f"the batch's AWS judging budget of {self.seconds:g}s is spent")


def host_facts(host: Host, outputs: dict[str, str], verdicts: dict[str, Verdict],
               fallback_group: str | None) -> HostFacts:
    identity = _identity(host, outputs)
    try:
        targets = parsers.stream_targets(outputs, identity, fallback_group)
    except Exception as exc:  # noqa: BLE001 - an odd config is those checks' ERROR, not the host's
        targets = Verdict.error(f"agent config unusable: {type(exc).__name__}: {exc}"[:300])
    return HostFacts(host.instance_id, outputs, verdicts, identity, _trusted(host, outputs), targets)


def aws_view(lookup, params: AuditParams, now: Callable[[], datetime]) -> AwsView:
    return AwsView(lookup, now, params.stream_max_age_minutes, params.canary)


@dataclass
class Judgement:
    status: Status
    failed: list[str]
    verdicts: dict[str, Verdict]
    detail: str
    advisory: list[str] = field(default_factory=list)
    canary: Canary | None = field(default=None)  # set while the canary search is still to come
    complete: bool = True  # the script's end marker was seen (no section missing by a cut)
    truncated: bool = False  # the output cap was hit
    claims: list[tuple[str, str]] = field(default_factory=list)  # streams not named by the instance id (name_claims)


def _score(j: Judgement, profile: Profile) -> None:
    score, j.detail = scored(j.verdicts, profile.decides, profile.name, j.complete, j.truncated)
    j.status, j.failed, j.advisory = score.status, score.failed, score.advisory


def judge_host(host: Host, outcome: HostOutcome, lookup: StreamLookup, params: AuditParams,
               now: Callable[[], datetime] = utc_now, profile: Profile | None = None,
               options: CheckOptions | None = None) -> Judgement:
    """Transport outcome + script output → status, failed check ids, verdicts, one-line detail. Never raises:
    a host whose output breaks the judge is ERROR, the batch goes on. A batch passes its profile and options
    (read once per batch, not per host)."""
    if outcome.transport_status is not None:
        return Judgement(outcome.transport_status, [], {}, outcome.transport_detail)
    try:
        profile = profile or load_profile(params.profile)
        options = options or CheckOptions(rule_groups=load_rule_set(params.rule_set))
        return _judge_output(host, outcome, lookup, params, now, profile, options)
    except Exception as exc:  # noqa: BLE001 - one odd host must not cost the batch
        log.exception("judging %s failed", host.instance_id)
        return Judgement(Status.ERROR, [], {}, f"could not judge this host's output: {type(exc).__name__}: {exc}"[:300])


def _judge_output(host: Host, outcome: HostOutcome, lookup: StreamLookup, params: AuditParams,
                  now: Callable[[], datetime], profile: Profile, options: CheckOptions) -> Judgement:
    output = split_sections(outcome.output.decode("utf-8", errors="replace"), outcome.nonce)
    output.truncated = outcome.truncated
    verdicts = evaluate_host_checks(output, options)
    facts = host_facts(host, output.usable(), verdicts, params.log_group)
    aws_verdicts, canary = evaluate_aws_checks(facts, aws_view(lookup, params, now))
    verdicts.update(aws_verdicts)
    j = Judgement(Status.ERROR, [], verdicts, "", canary=canary, complete=output.complete, truncated=output.truncated,
                  claims=name_claims.claims(host.instance_id, facts.targets))
    _score(j, profile)
    return j


# FilterLogEvents: 5 requests/s per account and Region, not adjustable. Each request a batch makes (a search or
# one of its pages) delays its next poll by this much, so the run's batches together stay under the quota with
# 25 % headroom.
FILTER_LOG_EVENTS_PER_S = 5.0
CANARY_POLL_S = 3.0


def canary_call_spacing_s(batches_in_run: int) -> float:
    return 1.25 * max(1, batches_in_run) / FILTER_LOG_EVENTS_PER_S


def settle_canaries(waiting: list[Judgement], logs_client, tag: str, since_ms: int, wait_s: float,
                    profile: Profile, per_call_s: float = 0.0) -> None:
    """Search the batch's canaries together (those carrying the batch's tag), then fill in each host's verdict
    and status. A canary found in the host's stream proves delivery: it also settles log_stream_fresh when that
    stream was not provably the host's own (shared or misnamed)."""
    seen = find_canaries(logs_client, [j.canary for j in waiting], tag, since_ms, wait_s, poll_s=CANARY_POLL_S,
                         per_call_s=per_call_s)
    for j in waiting:
        delay = seen.get(j.canary.instance_id)
        where = f"{j.canary.group}/{j.canary.stream}"
        if j.canary.tag != tag:
            j.verdicts[CANARY_CHECK] = Verdict.failed(f"the canary line names tag {j.canary.tag}, not this batch's "
                                                      f"{tag}: it is not the marker this run asked for")
        elif isinstance(delay, str):  # its group could not be searched: AWS's reason, this host only
            j.verdicts[CANARY_CHECK] = Verdict.error(delay[:300])
        elif delay is not None:
            j.verdicts[CANARY_CHECK] = Verdict.passed(f"canary found in {where} after {delay:g}s")
            if j.verdicts.get(STREAM_CHECK, Verdict.passed("")).status != CheckStatus.PASS:
                j.verdicts[STREAM_CHECK] = Verdict.passed(f"this host's canary arrived in {where} after {delay:g}s: "
                                                          "delivery proven end to end")
        else:
            j.verdicts[CANARY_CHECK] = Verdict.failed(f"canary not found in {where} within {wait_s:g}s")
        j.canary = None
        _score(j, profile)


class EvidenceWriter:
    """Buffers a batch's items and writes them every `every` hosts (and at close), one writer at a time."""

    def __init__(self, store: EvidenceStore, every: int = FLUSH_EVERY,
                 sink: Callable[[list[dict]], None] | None = None, keep: bool = False) -> None:
        self.store, self.every, self.pending = store, every, []
        self.sink = sink  # None: the day's table; re-verification (include/tasks/remediate.py) keeps its items aside
        self.written: list[dict] | None = [] if keep else None  # what was stored, for staging (include/report/staging.py)

    def add(self, item: dict) -> bool:
        """Returns whether a flush is due."""
        self.pending.append(item)
        return len(self.pending) >= self.every

    def take(self) -> list[dict]:
        # Swapped out on the event loop thread, so no append can slip between copy and clear.
        taken = self.pending[:]
        del self.pending[:]
        return taken

    def write(self, items: list[dict]) -> None:
        if items:
            (self.sink or self.store.put_items)(items)
            if self.written is not None:
                self.written.extend(items)

    def close(self) -> None:
        self.write(self.take())


def verify_batch(batch: Batch | dict, ctx: RunContext, ec2_client, logs_client, store: EvidenceStore,
                 eic_client=None, ssm_client=None, s3_client=None,
                 sink: Callable[[list[dict]], None] | None = None,
                 stage: Callable[[list[dict]], object] | None = None) -> dict:
    """Check every host of one batch and store its evidence. Returns only counts (XCom stays small).
    The batch's account-and-region clients: `eic_client` (ec2-instance-connect) for eic and auto without a
    key, `ssm_client` for ssm and auto, `s3_client` for ssm_output_bucket. `sink` receives the evidence items
    instead of the day's table (re-verification after a fix must not overwrite what the audit saw). `stage`
    receives every item stored, once, at the end (even when the batch fails: include/report/staging.py)."""
    batch = batch if isinstance(batch, Batch) else Batch.from_xcom(batch)
    hosts, gone = hydrate(ec2_client, batch.region, list(batch.instance_ids), ctx.params.address)
    run = BatchRun(ctx, store, logs_client, hosts, eic_client, ssm_client, s3_client, sink, keep=stage is not None)
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
    return {"label": batch.label or batch.region, "region": batch.region, "hosts": len(batch.instance_ids),
            "already_recorded": len(hosts) - len(todo), "no_longer_running": len(gone), "counts": dict(run.counts),
            "transports": dict(run.transports), "api_calls": dict(run.api_calls)}


class BatchRun:
    """One batch's steps and the state they share: the profile, waivers, host keys, the stream lookup (inside
    the judging budget), the canaries still to search, the evidence writer and the counts."""

    def __init__(self, ctx: RunContext, store: EvidenceStore, logs_client, hosts: list[Host],
                 eic_client=None, ssm_client=None, s3_client=None, sink=None, keep: bool = False) -> None:
        self.ctx, self.store, self.logs_client = ctx, store, logs_client
        self.eic_client = eic_client  # the batch's ec2-instance-connect client (transport eic)
        self.ssm_client, self.s3_client = ssm_client, s3_client
        self.transports: Counter[str] = Counter()  # hosts per transport that reached (or tried) them
        self.api_calls: Counter[str] = Counter()  # the transports' AWS calls, for the bench
        self.profile = load_profile(ctx.params.profile)
        self.options = CheckOptions(rule_groups=load_rule_set(ctx.params.rule_set))
        self.waivers = load_waivers(ctx.params.waivers_file)
        self.writer = EvidenceWriter(store, sink=sink, keep=keep)
        self.counts: Counter[str] = Counter()
        budget = Budget(JUDGE_BUDGET_S)
        # The batch's instance ids are its likely stream names (the default): listed, not looked up one by one;
        # other names are answered from the run's shared listing of the group (include/logs/stream_index.py).
        index = SharedIndex(store, logs_client, ctx.audit_date, ctx.run_id, ctx.params.stream_max_age_minutes,
                            before_call=budget.check)
        self.lookup = StreamLookup(logs_client, likely_names=[h.instance_id for h in hosts], before_call=budget.check,
                                   index=index)
        policy, known_hosts = (ctx.ssh.host_key_policy, ctx.ssh.known_hosts) if ctx.ssh else ("strict", None)
        self.keys = HostKeys(policy, PinStore(store.resource, store.table_name),
                             accept=ctx.params.accept_host_keys, run_id=ctx.run_id, known_hosts=known_hosts)
        self.awaiting: list[tuple[Host, HostOutcome, Judgement]] = []
        self.since_ms = int(utc_now().timestamp() * 1000) - 60_000  # canaries are searched from here
        self.tag = new_tag()  # framed into every host's script; the canary search looks for it

    def record(self, host: Host, outcome: HostOutcome | None, j: Judgement) -> bool:
        """Waivers, then the evidence item; returns whether a flush is due."""
        status, failed, waived = apply_waivers(host, j.status, j.failed, self.waivers, self.ctx.audit_date)
        self.counts[status.value] += 1
        return self.writer.add(instance_item(
            host=host, outcome=outcome, status=status, failed=failed, verdicts=j.verdicts, detail=j.detail,
            audit_date=self.ctx.audit_date, run_id=self.ctx.run_id, checked_at=utc_now(),
            ttl_days=self.ctx.params.ttl_days, profile=self.profile.name, advisory=j.advisory,
            transport=outcome.transport if outcome else self.ctx.params.transport, waived=waived,
            # Decided once per run, after every batch (include/verify/name_claims.py): a name unique only in this batch
            # may be a clone's too.
            stream_names=j.claims, attributed=name_claims.attributed_by_name(host.instance_id, j.verdicts)))

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

    def record_unread_pins(self, hosts: list[Host]) -> list[Host]:
        """A pin that could not be read is never "first use": those hosts are ERROR, not connected to."""
        unread = self.keys.prepare([h.instance_id for h in hosts])
        for host in hosts:
            if host.instance_id in unread:
                self.record(host, None, Judgement(Status.ERROR, [], {}, unread[host.instance_id]))
        return [h for h in hosts if h.instance_id not in unread]

    async def reach(self, hosts: list[Host]) -> None:
        """Each host through its transport (include/reach/transport.py); all outcomes judged and recorded alike."""
        lock = asyncio.Lock()

        async def on_outcome(host: Host, outcome: HostOutcome) -> None:
            self.transports[outcome.transport] += 1
            if outcome.transport in ("ssh", "eic"):
                # First-sight pin, accepted rotation, lost race: may make it HOST_KEY_MISMATCH or ERROR. Before judging.
                await asyncio.to_thread(self.keys.settle, host, outcome)
            judged = await asyncio.to_thread(judge_host, host, outcome, self.lookup, self.ctx.params, utc_now,
                                             self.profile, self.options)
            outcome.drop_output()
            if judged.canary is not None:  # stored once the batch's canaries have been searched
                self.awaiting.append((host, outcome, judged))
            elif self.record(host, outcome, judged):
                async with lock:  # one writer at a time: boto3 resources are not thread-safe
                    # Taken once the lock is held: a coroutine cancelled while it waits (the task's timeout
                    # ends the loop) leaves its items pending, and the writer's close() stores them.
                    await asyncio.to_thread(self.writer.write, self.writer.take())

        script = SCRIPT_WITH_CANARY if self.ctx.params.canary else SCRIPT
        plan = await self._plan(hosts)
        await asyncio.gather(*(transport.run(chosen, script, on_outcome) for transport, chosen in plan if chosen))

    async def _plan(self, hosts: list[Host]) -> list[tuple[Transport, list[Host]]]:
        """Which transport takes which hosts. SSH-side hosts need their pins read first (fail closed)."""
        choice = self.ctx.params.transport
        ssm_hosts, ssh_hosts, plan = [], hosts, []
        if choice in ("ssm", "auto"):
            ssm = SsmTransport(self.ssm_client, self.s3_client, self.ctx.ssm or SsmSettings(), calls=self.api_calls,
                               tag=self.tag)
            if choice == "ssm":
                ssm_hosts, ssh_hosts = hosts, []
            else:
                try:
                    ssm_hosts, ssh_hosts = split_for_auto(hosts, await ssm.describe(hosts))
                except SsmDenied as exc:  # auto: SSM unusable here, so SSH for every host (said in the log)
                    log.warning("transport auto: %s; every host goes over SSH", exc)
            plan.append((ssm, ssm_hosts))
        if ssh_hosts:
            readable = self.record_unread_pins(ssh_hosts)  # first: the SSH side is handed the pins it read
            plan.append((self._ssh_transport(), readable))
        return plan

    def _ssh_transport(self) -> Transport:
        ssh = self.ctx.ssh
        if ssh is None:
            return NoTransport("not reachable through SSM, and no SSH connection (ec2_audit_ssh) to fall back on")
        before_connect = None
        if ssh.transport == "eic":  # a key made for this batch, pushed before each session
            from include.reach.eic import EicBatch

            eic = EicBatch.start(ssh, self.eic_client)
            ssh, before_connect = eic.settings, eic.push
        return SshTransport(ssh, self.keys.transport_pins, self.ctx.params.concurrency, before_connect, tag=self.tag)

    def settle_canaries(self, per_call_s: float = 0.0) -> None:
        if not self.awaiting:
            return
        settle_canaries([j for _, _, j in self.awaiting], self.logs_client, self.tag, self.since_ms,
                        self.ctx.params.canary_wait_seconds, self.profile, per_call_s)
        for host, outcome, judged in self.awaiting:
            self.record(host, outcome, judged)
