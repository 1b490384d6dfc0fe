"""Evidence in DynamoDB: the current observation per (instance_id, audit_date), the ones it replaced kept as
versions, and a run summary per day.

Keys are the instance and the audit day — never the run id or the wall clock. Nothing observed is overwritten:
a new observation of a host's day becomes the current item and the one it replaces is kept, every attribute
and its `seq`, under "<day>#v#<seq>" (include/evidence/observation.py), in one transaction conditioned on the
`seq` it replaces (put_observations). Nothing here deletes; expiry is DynamoDB TTL on expires_at.
Reads of a day go through the `by_audit_date` index, never a table scan; its partition of the day holds
current items only.
"""
from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from include.aws.day_table import DayTable, _backoff, to_dynamo
from include.aws.errors import THROTTLED, error_code
from include.aws.tables import DAY_INDEX
from include.aws.tokens import request_token
from include.core.clock import expires_at, iso, utc_now
from include.core.host import Host, HostOutcome
from include.core.record import plain
from include.core.status import CheckStatus, Status, Verdict
from include.evidence.observation import CURRENT, as_version, observation_sha256, version_key
from include.evidence.records import EvidenceItem, RunSummary

log = logging.getLogger(__name__)

# put_observations: a transaction lost to another writer (ConditionalCheckFailed) is re-read and sent again, a
# throttled or conflicting one backed off and sent again, this many times in all; then it raises (the batch
# fails, its task retry stores the observations: nothing lost, nothing twice).
WRITE_ATTEMPTS = 8
RACE_ATTEMPTS = 64  # lost races (another writer's progress) before a batch gives up: _observe
WRITE_BASE_DELAY_S = 0.05
TRANSACT_ACTIONS = 100  # TransactWriteItems' limit; two actions a host that has a current item
TRANSACT_BYTES = 3_500_000  # of items in one transaction (DynamoDB's limit is 4 MB): room for keys, expressions
# Whole-request errors and per-action cancellation reasons that pass: back off, send again.
RETRY_CODES = THROTTLED | {"ProvisionedThroughputExceededException", "RequestLimitExceeded",
                           "TransactionInProgressException", "TransactionConflictException"}
RETRY_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded", "TransactionConflict",
                           "RequestLimitExceeded", "InternalServerError"})

SUMMARY_ID = "#run-summary"  # instance_id of the per-day run summary item
DIGEST_PREFIX = "#day-digest#"  # + chunk number: the day's digest (include/evidence/digest.py), written when sealed


def instance_item(*, host: Host, outcome: HostOutcome | None, status: Status, failed: list[str],
                  verdicts: Mapping[str, Verdict], detail: str, audit_date: str, run_id: str,
                  checked_at: datetime, ttl_days: int, mode: str = "live", profile: str = "audit-trail",
                  advisory: list[str] | None = None, transport: str = "ssh",
                  waived: list[str] | None = None, stream_names: Iterable[tuple[str, str]] = (),
                  attributed: tuple[str, str] | None = None, trigger: str = "",
                  output_ref: str = "", trigger_detail: str = "") -> dict[str, Any]:
    """The evidence item for one instance on one day (pure): the one place an EvidenceItem is built. Its `seq`
    and `item_sha256` (which covers the seq) are set by the store as it writes it (put_observations).
    `output_ref`: where the raw output whose SHA-256 is the outcome's digest is kept (include/evidence/raw_store.py)."""
    digest, size = outcome.digest() if outcome else ("", 0)
    item = EvidenceItem(
        instance_id=host.instance_id, audit_date=audit_date, run_id=run_id, mode=mode, checked_at=iso(checked_at),
        status=status.value, status_detail=detail[:500], failed_checks=list(failed),
        advisory_failed=list(advisory or []), waived_checks=list(waived or []), profile=profile,
        transport=outcome.transport if outcome else transport,  # under auto, what reached this host
        checks={cid: {"status": v.status.value, "detail": v.detail[:300]} for cid, v in sorted(verdicts.items())},
        region=host.region, account_id=host.account_id, private_ip=host.private_ip or "", address=host.address or "",
        platform=host.platform, name=host.name, environment=host.environment,
        # Contract: Name and Environment at least; all tags are kept (capped) for later questions.
        tags={k[:128]: v[:256] for k, v in list(host.tags.items())[:50]},
        host_key_fingerprint=(outcome.host_key_fingerprint if outcome else None) or "",
        host_key_note=outcome.host_key_note if outcome else "", output_sha256=digest, output_bytes=size,
        output_ref=output_ref if digest else "",
        output_truncated=bool(outcome and outcome.truncated), ssh_attempts=outcome.attempts if outcome else 0,
        transport_evidence=dict(outcome.transport_evidence) if outcome else {},
        expires_at=expires_at(audit_date, ttl_days), trigger=trigger, trigger_detail=trigger_detail[:1000],
        stream_names=[list(n) for n in stream_names], stream_attributed_by_name=list(attributed or []),
        stream=list(_fresh_stream(verdicts) or []),
    ).to_item()
    return item


def _fresh_stream(verdicts: Mapping[str, Verdict]) -> tuple[str, str] | None:
    """The (group, stream) a passing cwagent.log_stream_fresh rests on; None when it did not pass."""
    verdict = verdicts.get("cwagent.log_stream_fresh")
    return verdict.stream if verdict is not None and verdict.status == CheckStatus.PASS else None


class ObservationsNotStored(RuntimeError):
    """Observations still not stored after the bounded retries: the batch fails and its retry stores them."""


class _Lost(Exception):
    """A transaction refused because another writer replaced a current item first."""


@dataclass(frozen=True)
class Replacement:
    """One observation as it will be stored (`item`: seq and item_sha256 set, plain values) and the
    TransactWriteItems actions that store it: the replaced current kept as a version, then the new current."""

    item: dict[str, Any]
    actions: list[dict[str, Any]]


def observation_key(item: Mapping[str, Any]) -> tuple[str, str]:
    return str(item["instance_id"]), str(item["audit_date"])


def same_observation(current: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    """The current item already is this observation (a retried write whose reply was lost): nothing to store."""
    return (current.get("run_id"), current.get("checked_at")) == (item.get("run_id"), item.get("checked_at"))


def replacement(table_name: str, item: Mapping[str, Any], current: Mapping[str, Any] | None) -> Replacement:
    """Pure. How `item` becomes the current observation of its (instance, day) over `current` (None: the first).

    No current: seq 1, written only while there is none. Else the current is kept as a version (written only
    where none is: a version is never rewritten) and the new one, seq+1, replaces it only while its seq is still
    the one read (an item from before versions has none: only while it still has none)."""
    new = {k: v for k, v in item.items() if k != "day"}
    new.update(item_type=CURRENT, seq=int(current.get("seq") or 1) + 1 if current else 1)
    new["item_sha256"] = observation_sha256(new)
    put: dict[str, Any] = {"TableName": table_name, "Item": to_dynamo(new)}
    if current is None:
        return Replacement(new, [{"Put": {**put, "ConditionExpression": "attribute_not_exists(instance_id)"}}])
    version = as_version(current)
    if "seq" not in current:
        # An item from before versions: its item_sha256 (if any) was of another form. The version holds its
        # canonical hash, so seals and `verify` check it like any other.
        version["item_sha256"] = observation_sha256(version)
    keep = {"Put": {"TableName": table_name, "Item": to_dynamo(version),
                    "ConditionExpression": "attribute_not_exists(instance_id)"}}
    if "seq" in current:
        guard = {"ConditionExpression": "#seq = :seq", "ExpressionAttributeNames": {"#seq": "seq"},
                 "ExpressionAttributeValues": {":seq": current["seq"]}}
    else:
        guard = {"ConditionExpression": "attribute_exists(instance_id) AND attribute_not_exists(#seq)",
                 "ExpressionAttributeNames": {"#seq": "seq"}}
    return Replacement(new, [keep, {"Put": {**put, **guard}}])


def _size(item: Mapping[str, Any]) -> int:
    return len(json.dumps(item, default=str))


def _rounds(items: list[dict]) -> list[list[dict]]:
    """Transactions of at most TRANSACT_ACTIONS actions and TRANSACT_BYTES, one observation of a host each (a
    transaction may not touch an item twice: a second observation of a host goes in a later one)."""
    rounds: list[list[dict]] = []
    seen: dict[tuple[str, str], int] = {}
    for item in items:
        n = seen[observation_key(item)] = seen.get(observation_key(item), -1) + 1
        while len(rounds) <= n:
            rounds.append([])
        rounds[n].append(item)
    chunks: list[list[dict]] = []
    for group in rounds:
        chunk: list[dict] = []
        size = 0
        for item in group:
            cost = 2 * _size(item)  # the new current and, at most, the version it replaces
            if chunk and (2 * (len(chunk) + 1) > TRANSACT_ACTIONS or size + cost > TRANSACT_BYTES):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(item)
            size += cost
        if chunk:
            chunks.append(chunk)
    return chunks


def _passes(exc: ClientError) -> bool:
    """A refusal that passes (throttling, a conflicting transaction on the same items): back off and resend."""
    code = error_code(exc)[0]
    if code in RETRY_CODES:
        return True
    reasons = {r.get("Code") for r in exc.response.get("CancellationReasons") or []} - {"None", None}
    return code == "TransactionCanceledException" and bool(reasons & RETRY_REASONS) \
        and reasons <= RETRY_REASONS | {"ConditionalCheckFailed"}


class EvidenceStore(DayTable):
    """The evidence owner's items over the table layer (include/aws/day_table.py): instance items, run
    summaries, the day's digest and the report email's mark. `EvidenceStore.open(table)` opens the table."""

    # -- observations (instance items): appended, never overwritten
    def put_observations(self, items: Iterable[dict], max_attempts: int = WRITE_ATTEMPTS,
                         base_delay: float = WRITE_BASE_DELAY_S) -> list[dict]:
        """Store each item as the new current observation of its (instance, day), the one it replaces kept as
        a version: BatchGetItem (consistent) of the current items, then TransactWriteItems conditioned on the
        seq read. A transaction lost to another writer is re-read and sent again; throttled or conflicting, it
        is backed off and sent again; after `max_attempts` it raises ObservationsNotStored. A host whose
        current item already is this observation (same run_id and checked_at) is not written again.
        Returns the items as stored (seq and item_sha256 set), in the order given: what the writer stages."""
        stored: list[dict] = []
        for chunk in _rounds(list(items)):
            stored += self._observe(chunk, max_attempts, base_delay)
        return stored

    def _currents(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        found = self.batch_get(self.table_name, [{"instance_id": i, "audit_date": d} for i, d in keys],
                               consistent=True)
        return {observation_key(it): it for it in found}

    def current_items(self, audit_date: str, instance_ids: Iterable[str]) -> dict[str, dict]:
        """The current items of these instances on the day, every attribute as stored (consistent reads): what
        replace_observation needs as `seen`."""
        found = self._currents([(i, audit_date) for i in dict.fromkeys(instance_ids)])
        return {i: it for (i, _), it in found.items() if it.get("item_type") == CURRENT}

    def _observe(self, chunk: list[dict], max_attempts: int, base_delay: float) -> list[dict]:
        """One transaction's observations (one per host), re-read and resent until stored or out of attempts.

        A lost race means another writer stored its observation: progress, not a fault. Races get their own,
        larger budget (RACE_ATTEMPTS) and a short jittered pause, so writers on one host do not retry in
        lockstep; throttling and other retryable refusals use `max_attempts` with exponential backoff."""
        refused = lost = 0
        while True:
            currents = self._currents([observation_key(it) for it in chunk])
            stored: list[dict] = []
            actions: list[dict] = []
            for item in chunk:
                current = currents.get(observation_key(item))
                if current is not None and same_observation(current, item):
                    stored.append(plain(current))  # stored already: a retry whose reply was lost
                    continue
                planned = replacement(self.table_name, item, current)
                stored.append(planned.item)
                actions += planned.actions
            if not actions:
                return stored
            try:
                self._transact(actions)
                return stored
            except _Lost:
                lost += 1
                log.info("%d observations: another writer replaced a current item first; re-reading", len(chunk))
                if lost >= RACE_ATTEMPTS:
                    break
                time.sleep(base_delay * random.random() * min(lost, 4))
            except ClientError as exc:
                if not _passes(exc):
                    raise
                log.info("transaction refused (%s), attempt %d of %d", error_code(exc)[0], refused + 1, max_attempts)
                refused += 1
                if refused >= max_attempts:
                    break
                _backoff(refused - 1, base_delay)
        raise ObservationsNotStored(f"{len(chunk)} observations still not stored after {refused} refusals and "
                                    f"{lost} lost races: the batch fails, its retry stores them")

    def _transact(self, actions: list[dict]) -> None:
        try:
            self.client.transact_write_items(TransactItems=actions, ClientRequestToken=request_token(actions))
        except ClientError as exc:
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if "ConditionalCheckFailed" in reasons and not set(reasons) & RETRY_REASONS:
                raise _Lost() from exc
            raise

    def replace_observation(self, item: dict, seen: Mapping[str, Any], max_attempts: int = WRITE_ATTEMPTS,
                            base_delay: float = WRITE_BASE_DELAY_S) -> dict | None:
        """Store `item` as a new observation over `seen` (the current item as read, every attribute), only while
        `seen` is still current: a correction of that observation (include/verify/name_claims.py), `seen` kept
        as a version. None when another observation replaced it meanwhile (that one decides). Throttling is
        backed off and retried, then raises."""
        planned = replacement(self.table_name, item, seen)
        for attempt in range(max_attempts):
            try:
                self._transact(planned.actions)
                return planned.item
            except _Lost:
                return None
            except ClientError as exc:
                if not _passes(exc):
                    raise
                _backoff(attempt, base_delay)
        raise ObservationsNotStored(f"{item.get('instance_id')}: correction not stored after {max_attempts} attempts")

    def observations(self, instance_id: str, day: str) -> list[dict]:
        """Every observation of one host on one day, oldest first by seq, the current one last: ONE Query
        (`begins_with(audit_date, day)`: the current's key is the day, its versions' "<day>#v#<seq>")."""
        kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(instance_id)
                        & Key("audit_date").begins_with(day), "ConsistentRead": True}
        found = [plain(it) for it in self.query_all(kwargs)]
        return sorted(found, key=lambda it: (it.get("item_type") == CURRENT, int(it.get("seq") or 1)))

    def day_versions(self, day: str, fields: Iterable[str] | None = None) -> list[dict]:
        """Every version of the day (observations replaced), through the day index: its partitions "<day>#v#1",
        "<day>#v#2", ... up to the first empty one (a host's version s > 1 implies its version s-1)."""
        found: list[dict] = []
        for seq in range(1, 1_000_000):
            kwargs: dict = {"IndexName": DAY_INDEX, "KeyConditionExpression": Key("audit_date").eq(version_key(day, seq))}
            if fields is not None:
                names = sorted({"instance_id", "audit_date", "item_type", "day", "seq", *fields})
                kwargs["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(names)))
                kwargs["ExpressionAttributeNames"] = {f"#p{i}": name for i, name in enumerate(names)}
            page = self.query_all(kwargs)
            if not page:
                break
            found += [plain(it) for it in page]
        return found

    def recorded_by_run(self, audit_date: str, instance_ids: list[str], run_id: str) -> set[str]:
        """Ids this run already stored for the day: a task retry skips them instead of redoing them."""
        keys = [{"instance_id": i, "audit_date": audit_date} for i in instance_ids]
        items = self.batch_get(self.table_name, keys, "#instance_id, #run_id")
        return {it["instance_id"] for it in items if it.get("run_id") == run_id}

    def day_items(self, audit_date: str, run_id: str | None = None, fields: Iterable[str] | None = None,
                  status: Status | str | None = None) -> list[EvidenceItem]:
        """Instance items of a day via the day index, optionally only one run's and/or one status.

        The filters run server-side and `fields` projects the items, so a step that needs three attributes
        of 10,000 items does not pull 10,000 full evidence records over the wire (nor parse them); what was not
        projected reads as its EvidenceItem default.
        """
        condition = Attr("item_type").eq("instance")
        if run_id is not None:
            condition &= Attr("run_id").eq(run_id)
        if status is not None:
            condition &= Attr("status").eq(str(status))
        kwargs: dict = {"IndexName": DAY_INDEX, "KeyConditionExpression": Key("audit_date").eq(audit_date),
                        "FilterExpression": condition}
        if fields is not None:
            names = sorted({"instance_id", "audit_date", "item_type", "run_id", *fields})
            kwargs["ProjectionExpression"] = ", ".join(f"#p{i}" for i in range(len(names)))
            kwargs["ExpressionAttributeNames"] = {f"#p{i}": name for i, name in enumerate(names)}
        return [EvidenceItem.from_item(it) for it in self.query_all(kwargs)]

    # -- run summary
    def put_summary(self, audit_date: str, summary: RunSummary, ttl_days: int) -> None:
        self.put_day_item(SUMMARY_ID, "run_summary", audit_date, summary.to_item(), ttl_days)

    def run_summary(self, audit_date: str) -> RunSummary | None:
        """The day's run summary (its email mark included), or None when the day has none."""
        item = self.get_day_item(SUMMARY_ID, audit_date)
        return RunSummary.from_item(item) if item else None

    def summaries(self, first_day: str, last_day: str) -> dict[str, RunSummary]:
        """Audit day → its run summary, between two days (inclusive), oldest first: one Query on the summary
        partition."""
        kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(SUMMARY_ID)
                        & Key("audit_date").between(first_day, last_day)}
        return {it["audit_date"]: RunSummary.from_item(it) for it in self.query_all(kwargs)}

    def previous_audit_day(self, audit_date: str) -> str | None:
        """The latest day before `audit_date` that has a run summary (days can be skipped)."""
        item = self.latest_day_item(SUMMARY_ID, before=audit_date, projection="audit_date")
        return item["audit_date"] if item else None

    def emailed_by(self, audit_date: str) -> str | None:
        """The run id whose report email for this day went out, if any."""
        summary = self.run_summary(audit_date)
        return (summary.emailed_run_id or None) if summary else None

    def mark_emailed(self, audit_date: str, run_id: str) -> None:
        """Called right after a successful send, so a retried send task does not mail twice."""
        self.table.update_item(
            Key={"instance_id": SUMMARY_ID, "audit_date": audit_date},
            UpdateExpression="SET emailed_run_id = :r, emailed_at = :t",
            ExpressionAttributeValues={":r": run_id, ":t": iso(utc_now())},
        )

    def host_history(self, instance_id: str, limit: int = 90) -> list[EvidenceItem]:
        """One instance's current items, newest day first: a Query on its partition (the table's key), versions
        filtered out server-side and paged on until `limit` days are read, so versions never crowd days out."""
        kwargs: dict = {"KeyConditionExpression": Key("instance_id").eq(instance_id), "ScanIndexForward": False,
                        "FilterExpression": Attr("item_type").eq(CURRENT), "Limit": limit}
        items: list[dict] = []
        while len(items) < limit:
            response = self.table.query(**kwargs)
            items += response.get("Items", [])
            if "LastEvaluatedKey" not in response:
                break
            kwargs = {**kwargs, "ExclusiveStartKey": response["LastEvaluatedKey"]}
        return [EvidenceItem.from_item(it) for it in items[:limit]]

    def latest_audit_day(self) -> str | None:
        item = self.latest_day_item(SUMMARY_ID, projection="audit_date")
        return item["audit_date"] if item else None

    # -- the day's digest (include/evidence/digest.py): statuses for drift, the index the report matches against
    def put_digest(self, audit_date: str, digest: Mapping[str, Any], ttl_days: int) -> int:
        """Write the day's digest as chunk items (the first holds the count and the hash); returns the count."""
        from include.evidence import digest as day_digest

        parts, sha = day_digest.encode(digest)
        self.put_chunks(DIGEST_PREFIX, "day_digest", audit_date, parts, sha, {"hosts": len(digest)}, ttl_days)
        return len(parts)

    def digest(self, audit_date: str) -> dict | None:
        """The day's digest (instance id → day_digest.Entry), or None when the day has none (sealed before
        digests, or never): callers then read the day's items as before."""
        from include.evidence import digest as day_digest

        found = self.get_chunks(DIGEST_PREFIX, audit_date)
        return day_digest.decode(found[0], found[1]["sha256"]) if found else None

    def items_by_id(self, audit_date: str, instance_ids: Iterable[str], consistent: bool = False) -> list[EvidenceItem]:
        """Full instance items of these instances on the day (BatchGetItem, 100 a call); `consistent` for what
        this run has just written (the watch reads its re-checks back)."""
        keys = [{"instance_id": i, "audit_date": audit_date} for i in dict.fromkeys(instance_ids)]
        found = self.batch_get(self.table_name, keys, consistent=consistent) if keys else []
        return [EvidenceItem.from_item(it) for it in found if it.get("item_type") == "instance"]
